-- bench/fuzz.lua - fuzzing throughput on examples/fuzz_parser.lua's target
-- (CPL3 code in mode = "user"; each run ends in a system call exit):
-- exec/s with breakpoint coverage and with blind mutation (the bug is not
-- hunted: findings are not minimised, the run lasts the time budget).
--   build/moonvisor bench/fuzz.lua [seconds per mode]          (default 3)
--   build/moonvisor bench/fuzz.lua --time-to-bug SECONDS SEED... (coverage, then blind, per seed)
-- Run from the repository root after `make`.
local fuzz = require "moonvisor.fuzz"

local function example_config()
  local cfg = require("moonvisor.fuzz_cli").config_of("examples/fuzz_parser.lua")
  local dir = os.tmpname()
  os.remove(dir)
  cfg.findings, cfg.quiet, cfg.status, cfg.stop_after = dir, true, false, nil
  return cfg, dir
end

local function run(extra)
  local cfg, dir = example_config()
  for k, v in pairs(extra) do cfg[k] = v end
  if extra.blind then cfg.coverage = nil end
  cfg.blind = nil
  local s = fuzz.new(cfg):run()
  os.execute(("rm -rf '%s'"):format(dir))
  return s
end

if arg[1] == "--time-to-bug" then
  local budget = tonumber(arg[2])
  for i = 3, #arg do
    local seed = math.tointeger(tonumber(arg[i]))
    for _, cov in ipairs{ true, false } do
      local s = run{ seed = seed, seconds = budget, stop_after = 1, minimize = false, blind = not cov }
      local f = s.findings[1]
      print(("seed %d %-8s %s"):format(seed, cov and "coverage" or "blind",
        f and ("bug after %d iterations, %.2f s"):format(f.iteration, f.elapsed)
          or ("not found in %d iterations, %.0f s"):format(s.iterations, s.elapsed)))
    end
  end
  return
end

local secs = tonumber(arg[1]) or 3
print(("bench/fuzz: examples/fuzz_parser.lua target, %s s per mode"):format(secs))
for _, cov in ipairs{ true, false } do
  local s = run{ seed = 1, seconds = secs, iterations = false, minimize = false, blind = not cov }
  print(("  %-9s %8.0f exec/s  (%d execs, corpus %d, blocks %d/%d, %d findings)"):format(
    cov and "coverage" or "blind", s.exec_per_s, s.execs, s.corpus, s.covered, s.blocks, #s.findings))
end
