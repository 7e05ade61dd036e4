-- modes.lua - puts a VCPU in a CPU mode for g:vcpu{ mode = ... }: the
-- machine state each mode needs, from moonvisor.x86's pieces, in readable
-- Lua that can be copied and changed.
--
--   real       flat real mode: every segment base 0, RIP = entry (the default)
--   protected  32-bit flat segments from a GDT, paging off, interrupts off
--   long       64-bit, identity page tables with 2 MiB pages over the first
--              4 GiB, NX, SSE, exception stubs in the IDT (moonvisor.mode_long)
--   user       64-bit code at CPL3 in a sandbox (moonvisor.user)
--
-- Options: entry, stack (RSP; default: just below the tables), tables (where
-- the GDT and page tables go; default: the last 36 KiB of the lowest RAM
-- mapping), and the mode's own (mode long's exceptions).  Modes long and
-- user live in their modules, loaded with their first VCPU.
local x86 = require "moonvisor.x86"

local modes = {}

local here, elsewhere = {}, { long = "moonvisor.mode_long", user = "moonvisor.user" }

function here.real(cpu, opts)
  cpu:write_state{ rip = opts.entry or 0, rsp = opts.stack or 0, rflags = 2 }
end

-- TR and LDT stay as they are (write_sregs keeps what it is not given).
function here.protected(cpu, opts)
  local g = cpu:guest()
  local at = opts.tables or x86.default_tables(g)
  g:write(at, x86.gdt())
  local data = x86.segment(x86.DATA, false, false)
  cpu:write_sregs{
    gdt = { base = at, limit = 4 * 8 - 1 }, idt = { base = 0, limit = 0 },
    cr0 = x86.CR0.PE | x86.CR0.ET | x86.CR0.NE, cr4 = 0, efer = 0,
    cs = x86.segment(x86.CODE32, true, false), ds = data, es = data, fs = data, gs = data, ss = data,
  }
  cpu:write_state{ rip = opts.entry or 0, rsp = opts.stack or at, rflags = 2 }
end

-- The names of the modes, sorted.
function modes.names()
  local names = {}
  for k in pairs(here) do names[#names + 1] = k end
  for k in pairs(elsewhere) do names[#names + 1] = k end
  table.sort(names)
  return names
end

-- Puts cpu in `mode` as described above; returns cpu.
function modes.setup(cpu, mode, opts)
  local set = here[mode]
  if not set and elsewhere[mode] then set = require(elsewhere[mode]).setup end
  if not set then
    local names = {}
    for i, k in ipairs(modes.names()) do names[i] = ("%q"):format(k) end
    error(("guest:vcpu: unknown mode %s (modes: %s)"):format(tostring(mode), table.concat(names, ", ")), 3)
  end
  set(cpu, opts)
  return cpu
end

return modes
