-- x86.lua - CPU modes for g:vcpu{ mode = ... }: the machine state each mode
-- needs, built in readable Lua so it can be copied and changed.
--
--   real       flat real mode: every segment base 0, RIP = entry (the default)
--   protected  32-bit flat segments from a GDT, paging off, interrupts off
--   long       64-bit, identity page tables with 2 MiB pages over the first
--              4 GiB (so MMIO above RAM is reachable), NX, SSE enabled, and
--              moonvisor's exception stubs (moonvisor.stubs) in the IDT, so
--              a fault is an `exception` exit from cpu:run() on every backend
--              rather than a triple fault (exceptions = false: no IDT)
--
-- Options: entry, stack (RSP; default: just below the tables), tables (where
-- the GDT and page tables go; default: the last 36 KiB of the lowest RAM
-- mapping), exceptions (long mode).  Layout at `tables`: +0 GDT, +0x1000
-- PML4, +0x2000 PDPT, +0x3000..+0x6fff four page directories, +0x7000 IDT,
-- +0x7200 exception stubs, +0x7440 TSS, the stubs' stack up to +0x8000.
local x86 = {}

-- moonvisor.stubs, for mode "long" only: loaded when first needed.
local function stubs() return require "moonvisor.stubs" end

x86.TABLES_SIZE = 0x8000

-- GDT selectors, the same in every mode.
x86.CODE32, x86.DATA, x86.CODE64 = 0x08, 0x10, 0x18

x86.CR0 = { PE = 1 << 0, MP = 1 << 1, EM = 1 << 2, TS = 1 << 3, ET = 1 << 4, NE = 1 << 5,
            WP = 1 << 16, AM = 1 << 18, NW = 1 << 29, CD = 1 << 30, PG = 1 << 31 }
x86.CR4 = { PSE = 1 << 4, PAE = 1 << 5, PGE = 1 << 7, OSFXSR = 1 << 9, OSXMMEXCPT = 1 << 10 }
x86.EFER = { SCE = 1 << 0, LME = 1 << 8, LMA = 1 << 10, NXE = 1 << 11 }

-- Bit names of the registers with flags, lowest bit first.
x86.BITS = {
  rflags = { { 0, "CF" }, { 2, "PF" }, { 4, "AF" }, { 6, "ZF" }, { 7, "SF" }, { 8, "TF" }, { 9, "IF" },
             { 10, "DF" }, { 11, "OF" }, { 14, "NT" }, { 16, "RF" }, { 17, "VM" }, { 18, "AC" }, { 21, "ID" } },
  cr0 = { { 0, "PE" }, { 1, "MP" }, { 2, "EM" }, { 3, "TS" }, { 4, "ET" }, { 5, "NE" }, { 16, "WP" },
          { 18, "AM" }, { 29, "NW" }, { 30, "CD" }, { 31, "PG" } },
  cr4 = { { 0, "VME" }, { 1, "PVI" }, { 2, "TSD" }, { 3, "DE" }, { 4, "PSE" }, { 5, "PAE" }, { 6, "MCE" },
          { 7, "PGE" }, { 8, "PCE" }, { 9, "OSFXSR" }, { 10, "OSXMMEXCPT" }, { 11, "UMIP" }, { 13, "VMXE" },
          { 16, "FSGSBASE" }, { 17, "PCIDE" }, { 18, "OSXSAVE" }, { 20, "SMEP" }, { 21, "SMAP" } },
  efer = { { 0, "SCE" }, { 8, "LME" }, { 10, "LMA" }, { 11, "NXE" }, { 12, "SVME" }, { 14, "FFXSR" } },
}

-- The set bits of a flags register by name: x86.describe("cr0", 0x80000011)
-- is "PE ET PG"; rflags also shows its IOPL when not 0.
function x86.describe(register, value)
  local bits = x86.BITS[register]
  if not bits then error("x86.describe: no flag names for " .. tostring(register), 2) end
  local set = {}
  for _, b in ipairs(bits) do
    if value & (1 << b[1]) ~= 0 then set[#set + 1] = b[2] end
  end
  if register == "rflags" and (value >> 12) & 3 ~= 0 then set[#set + 1] = "IOPL=" .. ((value >> 12) & 3) end
  return table.concat(set, " ")
end

-- One 8-byte segment descriptor: base, limit (in 4 KiB units when g), type
-- and flags as the CPU reads them.
local function descriptor(base, limit, access, flags)
  return string.pack("<I2I2I1I1I1I1", limit & 0xffff, base & 0xffff, (base >> 16) & 0xff, access,
                     ((flags & 0xf) << 4) | ((limit >> 16) & 0xf), (base >> 24) & 0xff)
end

-- The GDT every mode shares: null, 32-bit code, data, 64-bit code; with
-- tss, a 16-byte TSS descriptor at 0x20 follows.
function x86.gdt(tss)
  return descriptor(0, 0, 0, 0)
      .. descriptor(0, 0xfffff, 0x9a, 0xc)   -- 0x08: code, 32-bit, 4 GiB
      .. descriptor(0, 0xfffff, 0x92, 0xc)   -- 0x10: data, 4 GiB
      .. descriptor(0, 0xfffff, 0x9a, 0xa)   -- 0x18: code, 64-bit (L)
      .. (tss and descriptor(tss, 0x67, 0x89, 0) .. string.pack("<I4I4", tss >> 32, 0) or "")
end
x86.TSS = 0x20

-- The hidden part of a segment register that matches a GDT entry above.
local function segment(selector, code, long)
  return { selector = selector, base = 0, limit = 0xffffffff, present = 1, dpl = 0, s = 1,
           type = code and 11 or 3, db = long and 0 or 1, l = long and 1 or 0, g = 1, avl = 0, unusable = 0 }
end

-- Identity page tables over the first 4 GiB at `at`: PML4, PDPT, 4 PDs;
-- with `user`, every page is reachable from CPL3 too, and the accessed and
-- dirty bits are set already, so the CPU never writes the tables (they are
-- part of the sandbox, which must stay unwritten: moonvisor.stubs).
-- kernel = { first, limit, pts }: the 4 KiB pages from first to limit
-- (multiples of 0x1000) are reachable from CPL0 only; the 2 MiB pages
-- holding them are split by page tables at pts, pts + 0x1000, ..., which the
-- second result holds (the caller writes it there).
function x86.page_tables(at, user, kernel)
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

-- Where the tables go when opts.tables is not given: the end of the lowest
-- RAM mapping, leaving 4 KiB above them.
function x86.default_tables(g, size)
  size = size or x86.TABLES_SIZE
  local lowest
  for _, m in ipairs(g:mappings()) do
    if not m.readonly and (not lowest or m.gpa < lowest.gpa) then lowest = m end
  end
  if not lowest or lowest.size < size + 0x1000 then
    error("guest:vcpu: no RAM mapping large enough for the GDT and page tables (map RAM first or give tables = address)", 4)
  end
  return lowest.gpa + lowest.size - ((size + 0x1fff) & ~0xfff)
end
local default_tables = x86.default_tables

local function write_tables(g, at, with_pages)
  g:write(at, x86.gdt())
  if with_pages then g:write(at + 0x1000, (x86.page_tables(at))) end
end

x86.modes = {}

function x86.modes.real(cpu, opts)
  cpu:write_state{ rip = opts.entry or 0, rsp = opts.stack or 0, rflags = 2 }
end

function x86.modes.protected(cpu, opts)
  local g = cpu:guest()
  local at = opts.tables or default_tables(g)
  write_tables(g, at, false)
  local data = segment(x86.DATA, false, false)
  cpu:write_sregs{
    gdt = { base = at, limit = 4 * 8 - 1 }, idt = { base = 0, limit = 0 },
    cr0 = x86.CR0.PE | x86.CR0.ET | x86.CR0.NE, cr4 = 0, efer = 0,
    cs = segment(x86.CODE32, true, false), ds = data, es = data, fs = data, gs = data, ss = data,
  }
  cpu:write_state{ rip = opts.entry or 0, rsp = opts.stack or at, rflags = 2 }
end

-- The exception stubs of mode long: an IDT whose gates switch to their own
-- stack (IST 1 of a TSS), so that even a fault with a bad RSP reaches them.
local function write_exception_stubs(g, at)
  local idt, code, tss, stack = at + 0x7000, at + 0x7200, at + 0x7440, at + 0x8000
  g:write(at, x86.gdt(tss))
  g:write(idt, stubs().idt(code, x86.CODE64, 1))
  g:write(code, stubs().code(code))
  g:write(tss, string.pack("<I4I8I8I8I8I8", 0, 0, 0, 0, 0, stack) .. string.rep("\0", 0x68 - 44))   -- IST1
  return { base = idt, limit = 32 * 16 - 1 }, code, tss
end

function x86.modes.long(cpu, opts)
  local g = cpu:guest()
  local at = opts.tables or default_tables(g)
  write_tables(g, at, true)
  local idt, tr = { base = 0, limit = 0 }, nil
  if opts.exceptions ~= false then
    local code, tss
    idt, code, tss = write_exception_stubs(g, at)
    tr = { selector = x86.TSS, base = tss, limit = 0x67, type = 11, present = 1, dpl = 0, s = 0,
           db = 0, l = 0, g = 0, avl = 0, unusable = 0 }
    stubs().install(cpu, code)
  end
  local data = segment(x86.DATA, false, false)
  cpu:write_sregs{
    gdt = { base = at, limit = (tr and 6 or 4) * 8 - 1 }, idt = idt, tr = tr,
    cr3 = at + 0x1000,
    cr4 = x86.CR4.PAE | x86.CR4.OSFXSR | x86.CR4.OSXMMEXCPT,
    efer = x86.EFER.LME | x86.EFER.LMA | x86.EFER.NXE | x86.EFER.SCE,
    cr0 = x86.CR0.PE | x86.CR0.MP | x86.CR0.ET | x86.CR0.NE | x86.CR0.WP | x86.CR0.PG,
    cs = segment(x86.CODE64, true, true), ds = data, es = data, fs = data, gs = data, ss = data,
  }
  cpu:write_state{ rip = opts.entry or 0, rsp = opts.stack or at, rflags = 2 }
end

-- Puts cpu in `mode` as described above.
function x86.setup(cpu, mode, opts)
  local set = x86.modes[mode]
  if not set and not package.loaded["moonvisor.user"] then   -- mode "user" comes with moonvisor.user
    require "moonvisor.user"
    set = x86.modes[mode]
  end
  if not set then
    local names = {}
    for k in pairs(x86.modes) do names[#names + 1] = ("%q"):format(k) end
    table.sort(names)
    error(("guest:vcpu: unknown mode %s (modes: %s)"):format(tostring(mode), table.concat(names, ", ")), 3)
  end
  set(cpu, opts)
  return cpu
end

return x86
