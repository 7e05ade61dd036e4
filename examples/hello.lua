-- hello.lua - the shortest complete moonvisor experiment.
-- A real-mode guest (examples/guests/hello.asm, built by `make`) prints a
-- greeting through port 0x3f8, asks a Lua handler for a number on port
-- 0x3f9, sends it back plus one on 0x3fa, and halts.
local mv = require "moonvisor"

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local image = assert(io.open(here .. "/../build/guests/hello.bin", "rb")   -- source tree
                     or io.open(here .. "/guests/hello.bin", "rb"),     -- installed examples
                     "build/guests/hello.bin is missing: run `make` first"):read("a")

local g <close> = mv.guest{}
local ram = mv.vmo(0x10000)            -- 64 KiB of guest RAM
g:map(0, ram)
g:write(0x1000, image)

local uart = {}
g:trap("io", 0x3f8, 1, function(exit) uart[#uart + 1] = string.char(exit.data) end)
g:trap("io", 0x3f9, 1, function() return 41 end)   -- the answer to an IN
local echoed
g:trap("io", 0x3fa, 1, function(exit) echoed = exit.data end)

local cpu = g:vcpu{ entry = 0x1000 }
local exit = cpu:run()

io.write(table.concat(uart))
print(("guest sent back %d; exit: %s at rip=0x%x (backend %s)"):format(
  echoed, exit.type, cpu.rip, g:backend()))
