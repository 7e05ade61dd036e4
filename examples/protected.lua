-- protected.lua - a 32-bit freestanding C guest in protected mode.
-- Shows: g:vcpu{ mode = "protected" } (flat 4 GiB segments from a GDT,
-- paging off), load.elf putting a gcc -m32 -ffreestanding image
-- (examples/guests/protected.c + start.S, linked at 1 MiB by guest.ld) into
-- guest memory, and the guest printing through a 16550 UART modelled in Lua
-- (moonvisor.dev.uart on COM1: the guest programs the divisor and polls LSR
-- before each byte, as a real driver does).
local mv = require "moonvisor"
local load = require "moonvisor.load"
local uart_dev = require "moonvisor.dev.uart"

local function guest_file(name) return load.guest_file(name, arg and arg[0]) end

local g <close> = mv.guest{}
g:map(0, mv.vmo(0x200000))                    -- 2 MiB of RAM; the image goes to 1 MiB
local image = load.elf(g, guest_file("protected.elf"))
local uart = uart_dev.new(g, { base = 0x3f8 })   -- output: stdout

local cpu = g:vcpu{ entry = image.entry, mode = "protected" }
local exit = cpu:run{ timeout_ms = 10000 }
uart:flush()

local s = uart:stats()
print(("exit: %s in %s; UART: %d bytes sent at %d baud, %d register accesses"):format(
  exit.type, load.lookup(image, cpu.rip - 1) or "?", s.tx, s.baud, s.accesses))
