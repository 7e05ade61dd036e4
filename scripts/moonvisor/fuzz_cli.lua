-- moonvisor.fuzz_cli: the command line of a fuzz script: fuzzing within a
-- budget (moonvisor.fuzz), --repro FILE (one input, optionally recorded or
-- replayed: moonvisor.replay), campaigns of workers or of afl-fuzz
-- (moonvisor.campaign), and, started by AFL++, the script as its target
-- (moonvisor.afl).
--
--   local fuzz_cli = require "moonvisor.fuzz_cli"
--   local result = fuzz_cli.main(config, arg)   -- config as for fuzz.new; --help lists the options
--   local config = fuzz_cli.config_of("examples/fuzz_parser.lua")   -- a fuzz script's config, not fuzzing
local fuzz = require "moonvisor.fuzz"

local M = {}

local USAGE = [[
usage: %s [options]
  --repro FILE      run one input and report what it does (exit status 0 when it is a finding)
  --seed N          base seed (default %d)
  --iterations N    iteration budget
  --seconds S       time budget
  --no-coverage     blind mutation: no breakpoints, the corpus stays the seeds
  --findings DIR    where findings go (default %s)
  --corpus DIR      seed inputs
  --no-minimize     keep findings as found
  --stop-after N    stop after N unique findings (0: never)
  --timeout-ms N    the bound of one run (a longer run is a "timeout" finding)
  --record LOG      with --repro: write the run's replay log to LOG (moonvisor.replay)
  --replay LOG      with --repro: run it again from LOG (--verify: handlers too), naming any divergence
Campaigns (an AFL++ sync directory shared by every instance, moonvisor.sync):
  --sync DIR        be one instance of DIR: queue new inputs there, import the others'
  --worker NAME     this instance's name in DIR (default: the host name and 1)
  --sync-interval S seconds between imports (default 5)
  --jobs N          start N workers (--sync DIR, default fuzz-sync) and wait for them
  --afl-fuzz        start AFL++ instead (--jobs N instances: -M main, -S others) on
                    this script, in --sync DIR (default afl-sync)
  --secondary       with --afl-fuzz: no -M main here (another machine runs it)
  --name PREFIX     instance names PREFIX-1, PREFIX-2... (default: the host name)
  --afl-timeout MS  afl-fuzz -t;  --dict FILE  afl-fuzz -x;  --afl-args "WORDS"
Started by AFL++ (afl-fuzz ... -- moonvisor SCRIPT [@@]), the script is its
target (moonvisor.afl): FILE is the test case (@@), without it stdin.]]

-- M.main(cfg, argv): `cfg` as for fuzz.new, `argv` the script's arg table.  Returns the summary (fuzzing) or the outcome of the
-- input, with repro = true (--repro), and the Fuzzer.
function M.main(cfg, argv)
  argv = argv or {}
  local c = {}
  for k, v in pairs(cfg) do c[k] = v end
  local repro, file
  local rlog = {}    -- --record / --replay LOG with --repro
  local camp = {}    -- campaign options
  local pass = {}    -- the options a worker gets again
  local i = 1
  local function val()
    i = i + 1
    if argv[i] == nil then error(("fuzz: %s needs a value"):format(argv[i - 1]), 0) end
    return argv[i]
  end
  local function num(what)
    local v = val()
    local n = math.tointeger(tonumber(v))
    if not n or n < 0 then error(("fuzz: %s %s is not a count"):format(what, v), 0) end
    return n
  end
  local function again(...) for _, w in ipairs{ ... } do pass[#pass + 1] = w end end
  while argv[i] do
    local a = argv[i]
    if a == "--repro" then repro = val()
    elseif a == "--record" or a == "--replay" then rlog.mode, rlog.path = a:sub(3), val()
    elseif a == "--verify" then rlog.verify = true
    elseif a == "--seed" then c.seed = math.tointeger(tonumber(val())); camp.seed = c.seed
    elseif a == "--iterations" then c.iterations = math.tointeger(tonumber(val())); again(a, argv[i])
    elseif a == "--seconds" then c.seconds = tonumber(val()); camp.seconds = c.seconds
    elseif a == "--no-coverage" then c.coverage = nil; again(a)
    elseif a == "--findings" then c.findings = val(); camp.findings = c.findings; again(a, argv[i])
    elseif a == "--corpus" then c.corpus = val(); again(a, argv[i])
    elseif a == "--no-minimize" then c.minimize = false; again(a)
    elseif a == "--stop-after" then c.stop_after = num(a); again(a, argv[i])
      if c.stop_after == 0 then c.stop_after = nil end   -- 0: no limit
    elseif a == "--timeout-ms" then
      c.timeout_ms = math.tointeger(tonumber(val())); again(a, argv[i])
      if not c.timeout_ms or c.timeout_ms <= 0 then error("fuzz: --timeout-ms needs a number of milliseconds > 0", 0) end
    elseif a == "--sync" then camp.dir = val()
    elseif a == "--sync-interval" then camp.interval = tonumber(val()); again(a, argv[i])
      if not camp.interval or camp.interval <= 0 then error("fuzz: --sync-interval needs seconds > 0", 0) end
    elseif a == "--worker" then camp.worker = require("moonvisor.sync").check_name(val())
    elseif a == "--jobs" then camp.jobs = num(a)
    elseif a == "--afl-fuzz" then camp.afl = true
    elseif a == "--secondary" then camp.main = false
    elseif a == "--name" then camp.prefix = require("moonvisor.sync").check_name(val())
    elseif a == "--afl-timeout" then camp.timeout = num(a)
    elseif a == "--dict" then camp.dict = val()
    elseif a == "--afl-args" then camp.afl_args = val()
    elseif a == "-h" or a == "--help" then
      io.stdout:write(USAGE:format(argv[0] or "fuzz", cfg.seed or 1, tostring(cfg.findings)), "\n")
      return nil
    elseif a:sub(1, 1) ~= "-" and not file then file = a   -- AFL++'s @@
    else
      error(("fuzz: unknown option %s (try --help)"):format(a), 0)
    end
    i = i + 1
  end
  if not repro then
    local afl = require "moonvisor.afl"
    if afl.detected() then return afl.serve(c, { file = file }), nil end
  end
  if file then
    error(("fuzz: unexpected argument %s (an input is run with --repro FILE; a file argument is for AFL++'s @@)")
      :format(file), 0)
  end
  if not repro and (camp.afl or camp.jobs) then
    local campaign = require "moonvisor.campaign"
    camp.exe, camp.script = campaign.self_exe(), argv[0]
    if not camp.script then error("fuzz: a campaign needs the script's name (arg[0])", 0) end
    camp.log = c.log
    local sum
    if camp.afl then
      camp.dir = camp.dir or "afl-sync"
      camp.corpus, camp.dict = c.corpus, camp.dict or (c.afl and c.afl.dictionary)
      sum = campaign.afl(camp)
    else
      camp.dir, camp.args = camp.dir or "fuzz-sync", pass
      camp.seed = camp.seed or c.seed or 1
      sum = campaign.workers(camp)
    end
    sum.campaign = true
    return sum, nil
  end
  if camp.dir then   -- one instance of a sync directory
    local name = camp.worker or ((camp.prefix or require("moonvisor.campaign").hostname()) .. "-1")
    c.sync = { dir = camp.dir, name = name, interval = camp.interval }
    if not camp.findings then c.findings = camp.dir .. "/" .. name .. "/findings" end
  elseif camp.worker then
    error("fuzz: --worker NAME needs --sync DIR", 0)
  end
  if rlog.mode and not repro then error(("fuzz: --%s LOG needs --repro FILE"):format(rlog.mode), 0) end
  if repro then
    c.coverage = nil   -- one run: no breakpoints needed
    local f = fuzz.new(c)
    local out
    if rlog.mode then
      local mode = rlog.mode == "replay" and rlog.verify and "verify" or rlog.mode
      out = require("moonvisor.replay").fuzz_repro(f, repro, mode, rlog.path)
    else
      out = f:repro(repro)
    end
    out.repro = true
    return out, f
  end
  local f = fuzz.new(c)
  return f:run(), f
end

-- M.config_of(path) -> the config the fuzz script at path hands to
-- fuzz_cli.main, for benches and tests that drive it themselves: the script
-- runs up to that call, which then returns nothing (as after --help).
function M.config_of(path)
  local chunk, err = loadfile(path)
  if not chunk then error("fuzz_cli.config_of: " .. err, 2) end
  local main, cfg = M.main, nil
  M.main = function(c) cfg = c end
  local ok, why = pcall(chunk)
  M.main = main
  if not ok then error(why, 0) end
  if cfg == nil then error(("fuzz_cli.config_of: %s does not call fuzz_cli.main"):format(path), 2) end
  return cfg
end

return M
