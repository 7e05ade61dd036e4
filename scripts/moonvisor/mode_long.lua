-- mode_long.lua - mode = "long" (moonvisor.modes): 64-bit code at CPL0,
-- identity page tables with 2 MiB pages over the first 4 GiB (so MMIO above
-- RAM is reachable), NX, SSE enabled, and moonvisor's exception stubs
-- (moonvisor.stubs) in the IDT, so that a fault is an `exception` exit from
-- cpu:run() on every backend rather than a triple fault (exceptions = false:
-- no IDT).  Layout at `tables`: moonvisor.x86's.  M.page_tables builds
-- the tables (modes user and Linux's 64-bit entry use them too).
local x86 = require "moonvisor.x86"
local stubs = require "moonvisor.stubs"

local M = {}

-- Identity page tables over the first 4 GiB at `at`: PML4, PDPT, 4 PDs;
-- with `user`, every page is reachable from CPL3 too, and the accessed and
-- dirty bits are set already, so the CPU never writes the tables (they are
-- part of the sandbox, which must stay unwritten: moonvisor.stubs).
-- kernel = { first, limit, pts }: the 4 KiB pages from first to limit
-- (multiples of 0x1000) are reachable from CPL0 only; the 2 MiB pages
-- holding them are split by page tables at pts, pts + 0x1000, ..., which the
-- second result holds (the caller writes it there).
function M.page_tables(at, user, kernel)
  local parts = {}
  local P, RW, PS = 1, 2 | (user and 4 | 0x20 or 0), 0x80 | (user and 0x40 or 0)
  parts[1] = string.pack("<I8", (at + 0x2000) | P | RW) .. string.rep("\0", 4088)   -- PML4
  local pdpt = {}
  for i = 0, 3 do pdpt[#pdpt + 1] = string.pack("<I8", (at + 0x3000 + i * 0x1000) | P | RW) end
  parts[2] = table.concat(pdpt) .. string.rep("\0", 4096 - 32)
  local split, pts = {}, {}   -- 2 MiB page number -> its page table's address; the page tables
  if kernel then
    for big = kernel[1] >> 21, (kernel[2] - 1) >> 21 do
      split[big] = kernel[3] + #pts * 0x1000
      local e = {}
      for i = 0, 511 do
        local page = (big << 21) + (i << 12)
        local kernel_only = page >= kernel[1] and page < kernel[2]
        e[i + 1] = string.pack("<I8", page | P | (kernel_only and 2 | 0x20 or RW) | 0x40)
      end
      pts[#pts + 1] = table.concat(e)
    end
  end
  for pd = 0, 3 do
    local e = {}
    for i = 0, 511 do
      local big = pd * 512 + i
      e[i + 1] = string.pack("<I8", split[big] and split[big] | P | RW or (big << 21) | P | RW | PS)
    end
    parts[#parts + 1] = table.concat(e)
  end
  return table.concat(parts), table.concat(pts)
end

-- The exception stubs: an IDT whose gates switch to their own stack (IST 1
-- of a TSS), so that even a fault with a bad RSP reaches them.
local function write_exception_stubs(g, at)
  local idt, code, tss, stack = at + 0x7000, at + 0x7200, at + 0x7440, at + 0x8000
  g:write(at, x86.gdt(tss))
  g:write(idt, stubs.idt(code, x86.CODE64, 1))
  g:write(code, stubs.code(code))
  g:write(tss, string.pack("<I4I8I8I8I8I8", 0, 0, 0, 0, 0, stack) .. string.rep("\0", 0x68 - 44))   -- IST1
  return { base = idt, limit = 32 * 16 - 1 }, code, tss
end

function M.setup(cpu, opts)
  local g = cpu:guest()
  local at = opts.tables or x86.default_tables(g)
  g:write(at, x86.gdt())
  g:write(at + 0x1000, (M.page_tables(at)))
  local idt, tr = { base = 0, limit = 0 }, nil
  if opts.exceptions ~= false then
    local code, tss
    idt, code, tss = write_exception_stubs(g, at)
    tr = { selector = x86.TSS, base = tss, limit = 0x67, type = 11, present = 1, dpl = 0, s = 0,
           db = 0, l = 0, g = 0, avl = 0, unusable = 0 }
    stubs.install(cpu, code)
  end
  local data = x86.segment(x86.DATA, false, false)
  cpu:write_sregs{
    gdt = { base = at, limit = (tr and 6 or 4) * 8 - 1 }, idt = idt, tr = tr,
    cr3 = at + 0x1000,
    cr4 = x86.CR4.PAE | x86.CR4.OSFXSR | x86.CR4.OSXMMEXCPT,
    efer = x86.EFER.LME | x86.EFER.LMA | x86.EFER.NXE | x86.EFER.SCE,
    cr0 = x86.CR0.PE | x86.CR0.MP | x86.CR0.ET | x86.CR0.NE | x86.CR0.WP | x86.CR0.PG,
    cs = x86.segment(x86.CODE64, true, true), ds = data, es = data, fs = data, gs = data, ss = data,
  }
  cpu:write_state{ rip = opts.entry or 0, rsp = opts.stack or at, rflags = 2 }
end

return M
