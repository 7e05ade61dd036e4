-- bench/record.lua - what recording adds to a Lua-handled exit loop, and
-- how many log bytes an exit takes.  A real-mode guest loop (out dx,al ;
-- in al,dx ; dec ecx ; jnz) makes N exits with Lua handlers (the IN's
-- answer varies), three ways in one process, alternating for R rounds:
-- plain, recording (g:record to a temporary file) and replaying that log
-- (handlers not called).  Reports the median CPU time (os.clock: user +
-- system) per exit of each, the ratio record/plain, and log bytes per exit.
-- Run: build/moonvisor bench/record.lua [exits] [rounds]
local mv = require "moonvisor"

local N = tonumber(arg and arg[1]) or 200000
local R = tonumber(arg and arg[2]) or 5
local backend = os.getenv("MOONVISOR_BACKEND") or (io.open("/dev/kvm") and "kvm" or "soft")
local iterations = N // 2   -- two exits each

-- mov ecx, iterations ; mov dx, 0x3f8 ; l: out dx, al ; in al, dx ; dec ecx ; jnz l ; hlt
local code = "\x66\xb9" .. string.pack("<I4", iterations) .. "\xba\xf8\x03" .. "\xee\xec\x66\x49\x75\xfa\xf4"
local path = os.tmpname()

local function run(mode)
  local g <close> = mv.guest{ backend = backend }
  g:map(0, mv.vmo(0x10000))
  g:write(0x1000, code)
  local n = 0
  g:trap("io", 0x3f8, 1, function(e)
    if e.write then return end
    n = n + 1
    return n & 0xff
  end)
  local cpu = g:vcpu{ entry = 0x1000 }
  local rec = mode == "record" and g:record(path) or mode == "replay" and g:replay(path) or nil
  local t0 = os.clock()
  assert(cpu:enter().type == "hlt")
  local t = os.clock() - t0
  local s = rec and rec:close()
  return t / N * 1e9, s
end

local times = { plain = {}, record = {}, replay = {} }
local bytes, exits
for _ = 1, R do
  for _, mode in ipairs{ "plain", "record", "replay" } do
    local ns, s = run(mode)
    table.insert(times[mode], ns)
    if mode == "record" then bytes, exits = s.bytes, s.exits end
  end
end
os.remove(path)
for _, t in pairs(times) do table.sort(t) end
local function med(t) return t[(#t + 1) // 2] end
local plain, record, replay = med(times.plain), med(times.record), med(times.replay)
print(("record/replay (%s backend, %d exits, median of %d, CPU ns per exit):"):format(backend, N, R))
print(("  plain (Lua handlers)   %8.1f"):format(plain))
print(("  recording              %8.1f   (%+.1f ns, x%.3f)"):format(record, record - plain, record / plain))
print(("  replaying (no handler) %8.1f   (x%.3f)"):format(replay, replay / plain))
print(("  log: %d bytes for %d exits (+ the final hlt): %.2f bytes per exit"):format(bytes, exits, bytes / exits))
