-- mmio_device.lua - a device model written in Lua on an MMIO range, driven
-- by a 64-bit C guest (examples/guests/mmio.c).  Shows: a "mem" trap over a
-- register bank, a "bell" trap as the device's doorbell, and how a guest
-- waits for one: doorbells are asynchronous (as in Zircon; on KVM an
-- ioeventfd), so the guest rings, then halts; the host handles the doorbell
-- before cpu:run() returns, and enters again.  The guest then polls STATUS
-- (the device stays BUSY for a few reads, as if working) and reads RESULT.
--
-- The device: an Adler-32 checksum engine at 0xfeb00000 (32-bit registers)
--   0x00 ID      "CSUM"                 0x10 DATA8   write one byte
--   0x04 STATUS  bit 0 BUSY, bit 1 DONE 0x14 DATA32  write four bytes (LE)
--   0x08 CTRL    write 1: reset         0x18 RESULT  the checksum
--                                       0x1c COUNT   bytes since the reset
--   doorbell at 0xfeb01000: any write starts the computation
local mv = require "moonvisor"
local load = require "moonvisor.load"
local uart_dev = require "moonvisor.dev.uart"

local function guest_file(name) return load.guest_file(name, arg and arg[0]) end

local BASE, DOORBELL = 0xfeb00000, 0xfeb01000
local BUSY, DONE = 1, 2
local BUSY_READS = 3                          -- STATUS reads BUSY this often after a doorbell

-- The model: plain Lua state and two handlers.
local function checksum_device(g)
  local dev = { buf = {}, status = 0, result = 0, busy = 0,
                stats = { reads = 0, writes = 0, bells = 0 } }
  local function adler32(bytes)
    local a, b = 1, 0
    for i = 1, #bytes do a = (a + bytes[i]) % 65521; b = (b + a) % 65521 end
    return (b << 16) | a
  end
  g:trap("mem", BASE, 0x20, function(e)
    local reg = e.addr - BASE
    if e.write then
      dev.stats.writes = dev.stats.writes + 1
      if reg == 0x08 and e.data & 1 == 1 then dev.buf, dev.status, dev.result = {}, 0, 0
      elseif reg == 0x10 then dev.buf[#dev.buf + 1] = e.data & 0xff
      elseif reg == 0x14 then
        for i = 0, 3 do dev.buf[#dev.buf + 1] = (e.data >> (8 * i)) & 0xff end
      end
      return
    end
    dev.stats.reads = dev.stats.reads + 1
    if reg == 0x00 then return string.unpack("<I4", "CSUM")
    elseif reg == 0x04 then
      if dev.busy > 0 then dev.busy = dev.busy - 1; return BUSY end
      return dev.status
    elseif reg == 0x18 then return dev.result
    elseif reg == 0x1c then return #dev.buf
    end
    return 0
  end)
  g:trap("bell", DOORBELL, 4, function()
    dev.stats.bells = dev.stats.bells + 1
    dev.result, dev.status, dev.busy = adler32(dev.buf), DONE, BUSY_READS
  end)
  return dev
end

local g <close> = mv.guest{}
g:map(0, mv.vmo(0x200000))
local image = load.elf(g, guest_file("mmio.elf"))
local uart = uart_dev.new(g, { base = 0x3f8 })
local dev = checksum_device(g)
local finished, bad
g:trap("io", 0x501, 1, function(e) finished, bad = true, e.data end)

local cpu = g:vcpu{ entry = image.entry, mode = "long" }
local exit, waits = nil, 0
repeat
  exit = cpu:run{ timeout_ms = 10000 }
  if exit.type == "hlt" and not finished then waits = waits + 1 end
until finished or exit.type ~= "hlt"
uart:flush()
assert(finished, "the guest stopped early: " .. exit.type)
local s = dev.stats
print(("device: %d register reads, %d writes, %d doorbells; guest waited %d times; %d wrong"):format(
  s.reads, s.writes, s.bells, waits, bad))
if bad ~= 0 then os.exit(1) end
