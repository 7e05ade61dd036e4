-- sandbox.lua - one freestanding C function run again and again, each call
-- from the same clean state, with faults contained.  The guest
-- (examples/guests/sandbox.c) is 64-bit C at CPL3 in mode = "user": its
-- exceptions and system calls come back as exits.  Shows:
--   * calling into the guest: RIP = sandbox_entry (from load.elf's symbols),
--     RDI/RSI = the arguments; the result comes back as system call 60
--     ("exit") with the value in RDI;
--   * g:snapshot() once, g:restore(s) before each call: memory and
--     registers as they were, so a call cannot leak into the next one (the
--     guest counts its calls in a global: it always sees 1);
--   * a NULL-pointer read: RAM starts at 1 MiB, guest-physical page 0 is
--     unmapped, so the read is an unclaimed "mem" exit at address 0;
--   * ud2 (#UD) and a write above 4 GiB, outside the identity page tables
--     (#PF): "exception" exits with vectors 6 and 14;
--   * and the calls after each fault working as before.
local mv = require "moonvisor"
local load = require "moonvisor.load"

local function guest_file(name) return load.guest_file(name, arg and arg[0]) end

local g <close> = mv.guest{}
g:map(0x100000, mv.vmo(0x200000))            -- RAM at 1 MiB..3 MiB: nothing at 0
local image = load.elf(g, guest_file("sandbox.elf"))

local cpu = g:vcpu{ entry = image.symbols.sandbox_entry, mode = "user" }
local clean = g:snapshot()                    -- taken before any call

local VECTORS = { [6] = "#UD, invalid opcode", [13] = "#GP, general protection", [14] = "#PF, page fault" }
local function where(rip)
  local name, off = load.lookup(image, rip)
  return name and ("%s+0x%x"):format(name, off) or ("0x%x"):format(rip)
end

-- Runs sandbox_call(op, arg) from the clean state; returns a description.
local function call(op, arg)
  g:restore(clean)
  cpu:write_state{ rdi = op, rsi = arg or 0 }
  local e = cpu:run{ timeout_ms = 5000 }
  if e.type == "syscall" and cpu.rax == 60 then
    return tostring(cpu.rdi), true
  elseif e.type == "mem" then
    return ("fault: %s of %d bytes at unmapped 0x%x, in %s"):format(
      e.write and "write" or "read", e.size, e.addr, where(cpu.rip))
  elseif e.type == "exception" then
    return ("fault: exception %d (%s) in %s"):format(e.vector, VECTORS[e.vector] or "?", where(e.rip))
  end
  return ("fault: %s exit at rip 0x%x"):format(e.type, cpu.rip)
end

local OPS = { collatz = 0, null_read = 1, ud2 = 2, wild_write = 3, calls = 4 }
local plan = {
  { "collatz", 27 }, { "null_read", 0 }, { "collatz", 97 }, { "ud2" }, { "collatz", 871 },
  { "wild_write", 7 }, { "calls" }, { "collatz", 837799 },
}
local ok, faults = 0, 0
for i, c in ipairs(plan) do
  local what, good = call(OPS[c[1]], c[2])
  if good then ok = ok + 1 else faults = faults + 1 end
  print(("call %d: %-18s -> %s"):format(i, c[1] .. "(" .. (c[2] and tostring(c[2]) or "") .. ")", what))
end
print(("%d calls: %d returned, %d faulted and were contained"):format(#plan, ok, faults))
