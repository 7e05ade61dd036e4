-- long.lua - a 64-bit freestanding C guest in long mode computes a CRC-32.
-- Shows: g:vcpu{ mode = "long" } (identity page tables over 4 GiB, 64-bit
-- code segment), passing arguments in registers (RDI = buffer, RSI = length,
-- as the SysV ABI's main(buf, len) expects), the host writing input into
-- guest memory with g:write, and the guest returning its result through a
-- 32-bit OUT to port 0x500.  The guest (examples/guests/long.c) uses a
-- table-driven CRC-32; this script checks it against a bitwise one in Lua.
local mv = require "moonvisor"
local load = require "moonvisor.load"

local function guest_file(name) return load.guest_file(name, arg and arg[0]) end

-- 64 KiB of input: a sentence, then bytes from a fixed LCG (so the
-- output is the same on every run).
local parts, x = { "The quick brown fox jumps over the lazy dog. " }, 12345
for i = 1, 0x10000 - #parts[1] do
  x = (x * 1103515245 + 12345) & 0x7fffffff
  parts[#parts + 1] = string.char((x >> 16) & 0xff)
end
local data = table.concat(parts)

local function crc32(s)   -- bit by bit, no table: a second opinion
  local crc = 0xffffffff
  for i = 1, #s do
    crc = crc ~ s:byte(i)
    for _ = 1, 8 do crc = (crc >> 1) ~ (0xEDB88320 & -(crc & 1)) end
  end
  return crc ~ 0xffffffff
end

local g <close> = mv.guest{}
g:map(0, mv.vmo(0x400000))                    -- 4 MiB: image at 1 MiB, data at 2 MiB
local image = load.elf(g, guest_file("long.elf"))
local BUF = 0x200000
g:write(BUF, data)

local result
g:trap("io", 0x500, 4, function(e) result = e.data end)

local cpu = g:vcpu{ entry = image.entry, mode = "long" }
cpu:write_state{ rdi = BUF, rsi = #data }
local t0 = os.clock()
local exit = cpu:run{ timeout_ms = 20000 }
local guest_s = os.clock() - t0
assert(exit.type == "hlt", "the guest did not halt: " .. exit.type)
assert(result, "the guest sent no result")

local expect = crc32(data)
print(("CRC-32 of %d bytes at 0x%x"):format(#data, BUF))
print(("guest (64-bit C, long mode): 0x%08x"):format(result))
print(("host  (Lua, bitwise):        0x%08x"):format(expect))
print(result == expect and "match" or "MISMATCH")
io.stderr:write(("(guest run: %.1f ms on the %s backend)\n"):format(guest_s * 1000, g:backend()))
if result ~= expect then os.exit(1) end
