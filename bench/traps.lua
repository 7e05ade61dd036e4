-- bench/traps.lua - does trap dispatch stay flat as traps multiply?  The
-- same guest loop (out to one port, 200,000 exits) runs with 1 port trap and
-- with 10,000 port traps (binary search in core/trap.c), in one process,
-- alternating, reporting user+system CPU per exit (os.clock).
-- Run: build/moonvisor bench/traps.lua [exits]
local mv = require "moonvisor"

local N = tonumber(arg and arg[1]) or 200000
local backend = os.getenv("MOONVISOR_BACKEND") or (io.open("/dev/kvm") and "kvm" or "soft")

-- out dx, al ; jmp back  (real mode at 0x1000), dx = 5000: a port in the middle
local code = "\xba\x88\x13" .. "\xee" .. "\xeb\xfd"

local function run(ntraps)
  local g <close> = mv.guest{ backend = backend }
  g:map(0, mv.vmo(0x10000))
  g:write(0x1000, code)
  local n = 0
  local function handler() n = n + 1; if n == N then error("done", 0) end end
  for port = 0, ntraps - 1 do
    g:trap("io", ntraps == 1 and 5000 or port, 1, handler)
  end
  local cpu = g:vcpu{ entry = 0x1000 }
  local t0 = os.clock()
  pcall(cpu.enter, cpu)
  assert(n == N, "exit count")
  return (os.clock() - t0) / N * 1e9
end

local results = { [1] = {}, [10000] = {} }
for _ = 1, 3 do
  for _, ntraps in ipairs{ 1, 10000 } do table.insert(results[ntraps], run(ntraps)) end
end
for _, r in pairs(results) do table.sort(r) end
local one, many = results[1][2], results[10000][2]
print(("trap lookup (%s backend, %d exits, median of 3, CPU ns per exit):"):format(backend, N))
print(("  1 port trap        %8.1f"):format(one))
print(("  10,000 port traps  %8.1f   (%+.1f ns, x%.2f)"):format(many, many - one, many / one))
