-- bench/smp.lua - what guest:run costs.
-- 1. The Lua lock per exit: the same real-mode loop (out to a port with a
--    Lua handler, N exits) through cpu:enter (no lock) and through
--    g:run{ cpu } (the handler under the Lua lock; on KVM also the VCPU's
--    thread and the run's mutex in the exit path), alternating for R
--    rounds; medians of CPU time (os.clock: user + system, all threads) per exit.
-- 2. The soft scheduler's switch: two VCPUs counting down 2,000,000
--    instructions each under quanta from 10 to 1,000,000; the cost of a
--    switch is the extra time over the largest quantum divided by the
--    extra turns.
-- Run: build/moonvisor bench/smp.lua [exits] [rounds]   (MOONVISOR_BACKEND=kvm|soft)
local mv = require "moonvisor"

local N = tonumber(arg and arg[1]) or 200000
local R = tonumber(arg and arg[2]) or 5
local backend = os.getenv("MOONVISOR_BACKEND") or (io.open("/dev/kvm") and "kvm" or "soft")

local OUT_LOOP = "\xba\x88\x13" .. "\xee" .. "\xeb\xfd"   -- mov dx, 5000 ; l: out dx, al ; jmp l

local function median(t)
  table.sort(t)
  return t[(#t + 1) // 2]
end

local function exits(how)
  local g <close> = mv.guest{ backend = backend }
  g:map(0, mv.vmo(0x10000))
  g:write(0x1000, OUT_LOOP)
  local cpu = g:vcpu{ entry = 0x1000 }
  local n = 0
  g:trap("io", 5000, 1, function()
    n = n + 1
    if n == N then if how == "enter" then error("done", 0) else g:stop() end end
  end)
  local t0 = os.clock()
  if how == "enter" then pcall(cpu.enter, cpu) else g:run{ cpu } end
  local t = os.clock() - t0
  assert(n == N, "exit count")
  return t / N * 1e9
end

local a, b = {}, {}
for _ = 1, R do
  a[#a + 1] = exits("enter")
  b[#b + 1] = exits("run")
end
local ea, eb = median(a), median(b)
print(("%s: %d exits x %d rounds, CPU ns per Lua-handled exit: cpu:enter %.0f, g:run{ cpu } %.0f, difference %.0f")
  :format(backend, N, R, ea, eb, eb - ea))

if backend ~= "soft" then return end
-- mov ecx, 1000000 ; l: dec ecx ; jnz l ; hlt   (2,000,001 instructions and the hlt)
local COUNT = "\x66\xb9\x40\x42\x0f\x00" .. "\x66\x49" .. "\x75\xfc" .. "\xf4"
local function switch(quantum)
  local g <close> = mv.guest{ backend = "soft" }
  g:map(0, mv.vmo(0x10000))
  g:write(0x1000, COUNT)
  g:write(0x2000, COUNT)
  local cpus = { g:vcpu{ entry = 0x1000 }, g:vcpu{ entry = 0x2000 } }
  local t0 = os.clock()
  local res = g:run(cpus, { quantum = quantum })
  local t = os.clock() - t0
  assert(res.reason == "halted")
  return t, res.turns
end
local base_t, base_turns
local rows = {}
for _, q in ipairs{ 1000000, 100000, 10000, 1000, 100, 10 } do
  local ts, turns = {}, 0
  for _ = 1, R do
    local t
    t, turns = switch(q)
    ts[#ts + 1] = t
  end
  local t = median(ts)
  if not base_t then base_t, base_turns = t, turns end
  rows[#rows + 1] = ("  quantum %7d: %7d turns, %.1f ms%s"):format(q, turns, t * 1e3,
    turns > base_turns and (", %.0f ns per switch"):format((t - base_t) / (turns - base_turns) * 1e9) or "")
end
print("soft scheduler, 2 VCPUs x 2,000,000 instructions (medians of " .. R .. "):")
print(table.concat(rows, "\n"))
