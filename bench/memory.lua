-- bench/memory.lua - memory overhead of a running guest: the process's RSS
-- while a guest with 64 MiB of RAM (every page touched by the guest) runs,
-- minus those 64 MiB, next to the RSS of the bare interpreter.
-- Run: build/moonvisor bench/memory.lua
local mv = require "moonvisor"

local function rss_kib()
  for line in io.lines("/proc/self/status") do
    local v = line:match("^VmRSS:%s+(%d+)")
    if v then return tonumber(v) end
  end
end

local backend = os.getenv("MOONVISOR_BACKEND") or (io.open("/dev/kvm") and "kvm" or "soft")
local RAM = 64 << 20
local base = rss_kib()
local g <close> = mv.guest{ backend = backend }
local ram = mv.vmo(RAM)
g:map(0, ram)
-- 64-bit: write one byte in every page from 2 MiB up to the end of RAM, then hlt
g:write(0x1000, "\xbf\x00\x00\x20\x00"           -- mov edi, 0x200000
             .. "\xc6\x07\x01"                   -- l: mov byte [rdi], 1
             .. "\x48\x81\xc7\x00\x10\x00\x00"   -- add rdi, 0x1000
             .. "\x48\x81\xff\x00\x00\x00\x04"   -- cmp rdi, 0x4000000
             .. "\x72\xed"                       -- jb l
             .. "\xf4")                          -- hlt
local cpu = g:vcpu{ entry = 0x1000, mode = "long", tables = 0x100000 }
local e = cpu:run{ timeout_ms = 60000 }
assert(e.type == "hlt", "guest ended with " .. e.type .. " at rip " .. tostring(e.rip))
local running = rss_kib()
print(("memory (%s backend): interpreter %d KiB; with a running 64 MiB guest %d KiB; overhead %.1f MiB beyond guest RAM")
  :format(backend, base, running, (running - base - RAM / 1024) / 1024))
