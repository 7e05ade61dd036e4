-- user.lua - mode = "user": 64-bit code at CPL3 in a sandbox the runtime
-- builds, Hyperlight style.  User-accessible identity page tables over the
-- first 4 GiB, a GDT with user segments and a TSS, an IDT and a syscall
-- entry whose ring-0 stubs turn every exception and system call into an
-- exit the script sees:
--
--   { type = "exception", vector, error_code, rip }   (error_code where the CPU pushes one)
--   { type = "syscall", rip }                         (registers as the guest left them)
--
-- After either the VCPU is back in ring 3 with the user's registers and
-- cpu:run() resumes: a syscall returns to the instruction after it (set rax
-- for its result); an exception re-executes the faulting instruction unless
-- the script moved cpu.rip or reset the call (e.g. g:restore(snapshot)).
-- Use cpu:run(), not cpu:enter(), which reports the stubs' raw port exits.
--
-- How: on KVM the stubs run at CPL0 and report through port 0xEE
-- (exceptions: vector in eax, frame on the kernel stack) and 0xEF (syscall),
-- which user.lua turns into the exits above.  The soft backend reports
-- exceptions and syscalls itself, without running the stubs.
--
-- Layout at `tables` (0xC000 bytes): +0 GDT, +0x1000.. page tables (as
-- mode long's, with the user bit), +0x7000 IDT, +0x8000 stubs and TSS, kernel
-- stack up to +0xA000, then the page tables that split the 2 MiB pages
-- holding this area (one, or two where it crosses a 2 MiB line).  The area
-- is reachable from CPL0 only: ring 3 gets a page fault there, so it can
-- neither rewrite the stubs nor the tables (which is what lets a restore
-- trust the sandbox without the dirty log: moonvisor.stubs).
local x86 = require "moonvisor.x86"
local page_tables = require("moonvisor.mode_long").page_tables
local stubs = require "moonvisor.stubs"

local user = {}

user.TABLES_SIZE = 0xC000
user.KERNEL_CS, user.KERNEL_DS = 0x08, 0x10
user.USER_DS, user.USER_CS = 0x23, 0x2b          -- RPL 3
user.TSS_SEL = 0x30
user.EXCEPTION_PORT, user.SYSCALL_PORT = stubs.EXCEPTION_PORT, 0xef

local MSR = { STAR = 0xc0000081, LSTAR = 0xc0000082, SFMASK = 0xc0000084 }

local descriptor = x86.descriptor

-- null, kernel code64, kernel data, user code32 (sysret's base), user data,
-- user code64, 16-byte TSS descriptor.  STAR below relies on this order.
-- The accessed bits are set already: a segment load at CPL3 (mov ds, ax)
-- then writes nothing into the GDT, which is part of the sandbox.
function user.gdt(tss)
  return descriptor(0, 0, 0, 0)
      .. descriptor(0, 0xfffff, 0x9b, 0xa) .. descriptor(0, 0xfffff, 0x93, 0xc)
      .. descriptor(0, 0xfffff, 0xfb, 0xc) .. descriptor(0, 0xfffff, 0xf3, 0xc)
      .. descriptor(0, 0xfffff, 0xfb, 0xa)
      .. descriptor(tss, 0x67, 0x89, 0) .. string.pack("<I4I4", tss >> 32, 0)
end

-- The exception stubs (moonvisor.stubs), then the syscall entry:
--   syscall: out 0xef, al; o64 sysret
function user.stubs(base)
  return stubs.code(base), base + stubs.SIZE   -- the syscall entry follows the common tail
end
user.SYSCALL_STUB = "\xe6\xef\x48\x0f\x07"

-- Puts cpu in mode "user" (moonvisor.modes calls it for g:vcpu{ mode = "user" }).
function user.setup(cpu, opts)
  local g = cpu:guest()
  local at = opts.tables or x86.default_tables(g, user.TABLES_SIZE)
  local stubs_at, tss_at, kstack = at + 0x8000, at + 0x8400, at + 0xA000
  local code, syscall_at = user.stubs(stubs_at)
  g:write(at, user.gdt(tss_at))
  local tables, splits = page_tables(at, true, { at, at + user.TABLES_SIZE, at + 0xA000 })
  g:write(at + 0x1000, tables)
  g:write(at + 0xA000, splits)
  g:write(at + 0x7000, stubs.idt(stubs_at, user.KERNEL_CS))
  g:write(stubs_at, code .. user.SYSCALL_STUB)
  -- RSP0, and the I/O map base (+0x66) at the TSS limit: no I/O permission
  -- bitmap, so every IN/OUT at CPL3 is a #GP (with base 0 the TSS's own zero
  -- bytes would be the bitmap and let ring 3 reach most ports below 0x340)
  g:write(tss_at, string.pack("<I4I8", 0, kstack) .. string.rep("\0", 0x66 - 12) .. string.pack("<I2", 0x68))
  local function seg(sel, code, dpl) return x86.segment(sel, code, code, dpl) end   -- 64-bit code
  local data = seg(user.USER_DS, false, 3)
  cpu:write_sregs{
    gdt = { base = at, limit = 8 * 8 - 1 }, idt = { base = at + 0x7000, limit = 32 * 16 - 1 },
    cr3 = at + 0x1000,
    cr4 = x86.CR4.PAE | x86.CR4.OSFXSR | x86.CR4.OSXMMEXCPT,
    efer = x86.EFER.LME | x86.EFER.LMA | x86.EFER.SCE,
    cr0 = x86.CR0.PE | x86.CR0.MP | x86.CR0.ET | x86.CR0.NE | x86.CR0.WP | x86.CR0.PG,
    cs = seg(user.USER_CS, true, 3), ds = data, es = data, fs = data, gs = data, ss = data,
    tr = { selector = user.TSS_SEL, base = tss_at, limit = 0x67, type = 11, present = 1, dpl = 0, s = 0,
           db = 0, l = 0, g = 0, avl = 0, unusable = 0 },
  }
  cpu:msr(MSR.STAR, (0x18 << 48) | (user.KERNEL_CS << 32))   -- sysret: CS 0x2b, SS 0x23
  cpu:msr(MSR.LSTAR, syscall_at)
  cpu:msr(MSR.SFMASK, 0x200)                                  -- IF off in the stub
  cpu:write_state{ rip = opts.entry or 0, rsp = opts.stack or at, rflags = 0x202 }
  user.cpus[cpu] = { cs = seg(user.USER_CS, true, 3), ss = data, syscall = syscall_at }
  stubs.install(cpu, stubs_at, user.cpus[cpu])
end

user.cpus = setmetatable({}, { __mode = "k" })   -- user-mode VCPUs

-- Turns the stubs' port exits (KVM) into exception and syscall exits, and
-- does the stub's return itself (iretq / sysret) so the VCPU is back in ring
-- 3 with the user's registers, as on the soft backend: cpu.rip is the
-- faulting instruction, or the one after the syscall.  Other exits pass.
-- (stubs.take also knows a syscall whose entry faulted in ring 3: kvm-pvm.)
function user.translate(cpu, e)
  local ring3 = user.cpus[cpu]
  if not ring3 or e.type ~= "io" or not e.write then return e end
  if e.port == user.SYSCALL_PORT then return stubs.syscall_return(cpu, ring3) end
  return stubs.take(cpu, e) or e
end

return user
