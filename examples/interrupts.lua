-- interrupts.lua - injecting timer interrupts into a real-mode guest.
-- Shows: cpu:interrupt(vector) delivering through the guest's IVT (the
-- guest, examples/guests/interrupts.asm, installs vector 8 itself), in two
-- ways: from an io trap handler while the guest busy-polls a port (the
-- interrupt is taken before the next instruction once the handler returns),
-- and between runs while the guest idles in hlt (each hlt exit gets a tick).
-- The guest's handler counts ticks and sends an EOI to port 0x20.
-- Real mode because the soft backend injects interrupts in real mode only;
-- on KVM cpu:interrupt works in every mode, through the IDT.
local mv = require "moonvisor"

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local image = assert(io.open(here .. "/../build/guests/interrupts.bin", "rb")   -- source tree
                     or io.open(here .. "/guests/interrupts.bin", "rb"),       -- installed examples
                     "build/guests/interrupts.bin is missing: run `make guests` first"):read("a")

local g <close> = mv.guest{}
g:map(0, mv.vmo(0x10000))
g:write(0x1000, image)

local TIMER = 0x08
local injected = { polled = 0, halted = 0 }
local polls, eois, count = 0, 0, nil

g:trap("io", 0x40, 1, function(_, cpu)     -- the guest polls "the timer"
  polls = polls + 1
  if polls % 4 == 0 then cpu:interrupt(TIMER); injected.polled = injected.polled + 1 end
  return 0
end)
g:trap("io", 0x20, 1, function() eois = eois + 1 end)
g:trap("io", 0x402, 2, function(e) count = e.data end)

local cpu = g:vcpu{ entry = 0x1000 }
local exit
repeat
  exit = cpu:run{ timeout_ms = 10000 }
  if exit.type == "hlt" and not count then   -- idle: wake it with the next tick
    cpu:interrupt(TIMER)
    injected.halted = injected.halted + 1
  end
until count or exit.type ~= "hlt"
assert(count, "the guest stopped early: " .. exit.type)

print(("guest counted %d timer interrupts"):format(count))
print(("host injected %d while the guest polled port 0x40 (%d polls) and %d while it halted; %d EOIs"):format(
  injected.polled, polls, injected.halted, eois))
