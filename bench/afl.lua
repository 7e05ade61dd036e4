-- bench/afl.lua - AFL++ against the native driver on examples/fuzz_parser.lua's
-- target: exec/s of each on 1 and 2 cores (moonvisor.campaign: native
-- workers, afl-fuzz -M/-S instances; total executions over wall time, start-
-- up included), then AFL++'s time to the planted bug from the example's seed.
--   build/moonvisor bench/afl.lua [seconds per run]           (default 10)
--   build/moonvisor bench/afl.lua --time-to-bug SECONDS [--dict FILE] SEED...
--                                  (afl-fuzz -s SEED [-x FILE], stops at the first crash)
-- Run from the repository root after `make`; needs afl++ (make deps-afl).
-- AFL_SKIP_CPUFREQ and AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES are set when
-- unset (a bench does not care about the CPU governor or a core_pattern
-- that pipes crashes to a handler, which AFL++ otherwise refuses).
local campaign = require "moonvisor.campaign"
local core = require "moonvisor.core"

local exe, script = campaign.self_exe(), "examples/fuzz_parser.lua"
io.stdout:setvbuf("line")

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  return d
end

local function envs()
  local set = {}
  for _, k in ipairs{ "AFL_SKIP_CPUFREQ", "AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES" } do
    if not os.getenv(k) then set[#set + 1] = k .. "=1" end
  end
  return table.concat(set, " ")
end

-- One campaign in a fresh process (so that this one's environment is set
-- for afl-fuzz), its summary read back from the instances' fuzzer_stats.
local function run(kind, jobs, secs)
  local dir = tmpdir()
  local cmd = ("%s %s %s %s --sync %s --jobs %d --seconds %s --name b%s 2>&1"):format(envs(), q(exe), q(script),
    kind == "afl" and "--afl-fuzz" or "--stop-after 0 --no-minimize", q(dir), jobs, secs, kind == "afl" and "" or " --seed 1")
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  local execs, el, cpu = out:match("campaign: %d+ instances, (%d+) execs in ([%d.]+) s %(%d+ exec/s; ([%d.]+) CPU s")
  os.execute("rm -rf " .. q(dir))
  if not execs then error("bench/afl: " .. kind .. " run failed:\n" .. out, 0) end
  return tonumber(execs), tonumber(el), tonumber(cpu)
end

if arg[1] == "--time-to-bug" then
  local budget = tonumber(arg[2]) or 60
  local first, dict = 3, ""
  if arg[3] == "--dict" then first, dict = 5, "-x " .. q(arg[4]) end
  local path, v = campaign.find_afl()
  print(("bench/afl: AFL++ (%s) to the planted bug, from the example's seed, %d s budget, backend %s"):format(
    v.text, budget, os.getenv("MOONVISOR_BACKEND") or "default"))
  local seeds = require("moonvisor.fuzz_cli").config_of(script).corpus   -- the example's seeds
  if dict ~= "" then print("  with the dictionary " .. arg[4]) end
  for i = first, #arg do
    local seed = math.tointeger(tonumber(arg[i]))
    local dir = tmpdir()
    os.execute("mkdir -p " .. q(dir .. "/in"))
    for k, d in ipairs(seeds) do
      local f = assert(io.open(("%s/in/seed-%d"):format(dir, k), "wb"))
      f:write(d)
      f:close()
    end
    local t0 = core.clock()
    os.execute(("%s AFL_NO_UI=1 AFL_BENCH_UNTIL_CRASH=1 %s -i %s -o %s -s %d -V %d %s -- %s %s @@ > %s 2>&1"):format(
      envs(), q(path), q(dir .. "/in"), q(dir .. "/out"), seed, budget, dict, q(exe), q(script), q(dir .. "/afl.log")))
    local wall = core.clock() - t0
    local st = campaign.read_stats(dir .. "/out/default/fuzzer_stats") or {}
    local p = io.popen(("ls %s 2>/dev/null | grep '^id:' | head -1"):format(q(dir .. "/out/default/crashes")))
    local crash = p:read("l")
    p:close()
    if crash then
      print(("seed %d  bug after %s execs, %.1f s of fuzzing (%.1f s wall, %s exec/s)"):format(seed,
        crash:match("execs:(%d+)") or "?", (tonumber(crash:match("time:(%d+)")) or 0) / 1000, wall,
        tostring(st.execs_per_sec)))
    else
      print(("seed %d  not found in %s execs, %.0f s"):format(seed, tostring(st.execs_done), wall))
    end
    os.execute("rm -rf " .. q(dir))
  end
  return
end

local secs = tonumber(arg[1]) or 10
local f = io.open("/proc/loadavg")
local load = f and f:read("l") or "?"
if f then f:close() end
print(("bench/afl: %s, %s s per run, backend %s, load average %s"):format(script, secs,
  os.getenv("MOONVISOR_BACKEND") or "default", load:match("^(%S+)") or load))
print("  (exec/s: executions / wall time; per CPU s: / CPU time of every process, AFL++'s included)")
local results, per_cpu = {}, {}
for _, kind in ipairs{ "native", "afl" } do
  for _, jobs in ipairs{ 1, 2 } do
    local execs, el, cpu = run(kind, jobs, secs)
    results[kind .. jobs], per_cpu[kind .. jobs] = execs / el, execs / math.max(cpu, 1e-3)
    print(("  %-7s %d %s  %8.0f exec/s  %8.0f per CPU s  (%d execs in %.1f s, %.1f CPU s)"):format(
      kind == "afl" and "AFL++" or "native", jobs, jobs == 1 and "core " or "cores", execs / el, execs / math.max(cpu, 1e-3),
      execs, el, cpu))
  end
end
print(("  scaling 1 -> 2 cores (wall): native x%.2f, AFL++ x%.2f; AFL++ / native per CPU s: %.2f"):format(
  results.native2 / results.native1, results.afl2 / results.afl1, per_cpu.afl1 / per_cpu.native1))
