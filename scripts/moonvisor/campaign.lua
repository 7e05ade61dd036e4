-- moonvisor.campaign: a fuzz campaign of several processes on this machine,
-- all instances of one AFL++ sync directory (moonvisor.sync), so that
-- campaigns on other machines can share it too.
--
--   campaign.workers(opts)   native workers: `moonvisor SCRIPT --worker NAME
--                            --sync DIR --seed S ...`, one per job
--   campaign.afl(opts)       AFL++: `afl-fuzz -M main` (unless main = false)
--                            and `-S` secondaries, each `-- moonvisor SCRIPT @@`
--
-- opts: exe, script, args (passed on to each worker), dir, jobs, seconds,
-- seed, prefix (of the instance names; default the host name), main,
-- corpus (a directory, or a list of seeds written to DIR/.seeds), timeout
-- (afl-fuzz -t, ms), dict (afl-fuzz -x), afl_args (more afl-fuzz words),
-- log.  Both wait for their processes (Ctrl-C stops them all), print a line
-- per instance from its fuzzer_stats and the total, and return
-- { instances = { { name, status, execs, exec_per_s, corpus, crashes, hangs } ... },
--   execs, exec_per_s, elapsed, cpu (CPU seconds of every process started),
--   exec_per_cpu_s }.  Each instance's output is in
-- DIR/.logs/NAME.log.  An afl-fuzz that is missing or older than AFL++ 4.00
-- is an error before anything starts.
local core = require "moonvisor.core"
local files = require "moonvisor.files"

local campaign = {}

campaign.MIN_AFL = { 4, 0 }   -- tested with 4.04c (Debian 12)

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function now()
  local f = io.open("/proc/uptime")
  local t = f and f:read("n")
  if f then f:close() end
  return t or os.time()
end

local read_file = files.read
local function write_file(path, data) files.write(path, data, "campaign") end

function campaign.hostname()
  local h = read_file("/proc/sys/kernel/hostname") or "host"
  h = h:gsub("%s+$", ""):gsub("[^%w_-]", "_")
  return h ~= "" and h or "host"
end

-- The executable that runs this script (for the processes it starts).
function campaign.self_exe()
  local p = io.popen("readlink /proc/" .. core.afl.getpid() .. "/exe")
  local exe = p:read("l")
  p:close()
  return exe
end

-- {======================================================= AFL++

-- afl-fuzz: $AFL_FUZZ, else the one on PATH.  Returns its path and version
-- ({ major, minor, text }); errors say what is missing or too old.
function campaign.find_afl()
  local path = os.getenv("AFL_FUZZ")
  if not path or path == "" then
    local p = io.popen("command -v afl-fuzz 2>/dev/null")
    path = p:read("l")
    p:close()
  end
  if not path or path == "" or not io.open(path) then
    error("campaign: afl-fuzz not found (install AFL++: apt-get install afl++ on Debian 12, "
      .. "or set AFL_FUZZ=/path/to/afl-fuzz)", 0)
  end
  local p = io.popen(q(path) .. " -h 2>&1")
  local out = p:read("a")
  p:close()
  out = out:gsub("\27%[[%d;]*m", "")
  local major, minor, suffix = out:match("afl%-fuzz%+%+(%d+)%.(%d+)(%a*)")
  local text
  if major then
    text = ("AFL++ %s.%s%s"):format(major, minor, suffix)
  else
    major, minor, suffix = out:match("afl%-fuzz (%d+)%.(%d+)(%a*)")
    text = major and ("AFL %s.%s%s (not AFL++)"):format(major, minor, suffix)
  end
  if not major then error(("campaign: %s does not say its version (is it afl-fuzz?)"):format(path), 0) end
  major, minor = tonumber(major), tonumber(minor)
  local need = campaign.MIN_AFL
  if major < need[1] or (major == need[1] and minor < need[2]) then
    error(("campaign: %s is %s, too old: moonvisor needs AFL++ %d.%02d or newer "
      .. "(the forkserver options and shared-memory test cases; tested with 4.04c)"):format(path, text, need[1], need[2]), 0)
  end
  return path, { major = major, minor = minor, text = text }
end

-- A dictionary file in AFL++'s format from a list of tokens.
function campaign.write_dict(path, tokens)
  local lines = {}
  for i, t in ipairs(tokens) do
    lines[i] = ('token_%d="%s"'):format(i, (t:gsub('[^%w ]', function(c) return ("\\x%02x"):format(c:byte()) end)))
  end
  write_file(path, table.concat(lines, "\n") .. "\n")
end

-- {======================================================= processes

-- CPU seconds (user + system) of this process's waited-for descendants:
-- /proc/self/stat's cutime and cstime, in clock ticks (100 a second on Linux).
local function children_cpu()
  local st = read_file("/proc/self/stat") or ""
  local rest = st:match("%) (.*)$") or ""
  local f = {}
  for w in rest:gmatch("%S+") do f[#f + 1] = w end
  -- after "(comm)": state is field 3 of stat, so cutime (16) and cstime (17) are f[14], f[15]
  return ((tonumber(f[14]) or 0) + (tonumber(f[15]) or 0)) / 100
end

-- Runs the commands at once, each with its output in its log, and waits for
-- all (Ctrl-C reaches them through the process group).  Returns the wall
-- time and the CPU time they took.
local function run_all(dir, cmds)
  os.execute(("mkdir -p %s"):format(q(dir .. "/.logs")))
  local sh = {}
  for i, c in ipairs(cmds) do
    local log, st = dir .. "/.logs/" .. c.name .. ".log", dir .. "/.logs/" .. c.name .. ".status"
    os.remove(st)
    sh[#sh + 1] = ("( %s > %s 2>&1 < /dev/null; echo $? > %s ) &"):format(c.cmd, q(log), q(st))
    cmds[i].log = log
  end
  sh[#sh + 1] = "wait"
  local t0, c0 = now(), children_cpu()
  os.execute(table.concat(sh, "\n"))
  local el, cpu = now() - t0, children_cpu() - c0
  for _, c in ipairs(cmds) do c.status = tonumber(read_file(dir .. "/.logs/" .. c.name .. ".status") or "") end
  return el, cpu
end

-- The numbers of an instance's fuzzer_stats (AFL++'s or moonvisor.sync's).
function campaign.read_stats(path)
  local d = read_file(path)
  if not d then return nil end
  local t = {}
  for k, v in d:gmatch("([%w_]+)%s*:%s*([^\n]*)") do t[k] = tonumber((v:gsub("%%$", ""))) or v end
  return t
end

local function tail(path, n)
  local d = read_file(path) or ""
  d = d:gsub("\27%[[%d;?]*[a-zA-Z]", ""):gsub("\27%)B", "")
  local lines = {}
  for l in d:gmatch("[^\n]+") do if l:find("%S") then lines[#lines + 1] = l end end
  return table.concat(lines, "\n", math.max(1, #lines - n + 1))
end

-- The summary of a finished campaign; errors when every instance failed.
local function summarize(opts, cmds, el, cpu)
  local log = opts.log or print
  local sum = { instances = {}, execs = 0, elapsed = el, cpu = cpu }
  local failed = {}
  for _, c in ipairs(cmds) do
    local st = campaign.read_stats(opts.dir .. "/" .. c.name .. "/fuzzer_stats") or {}
    local i = { name = c.name, status = c.status, execs = tonumber(st.execs_done) or 0,
                exec_per_s = tonumber(st.execs_per_sec) or 0, corpus = tonumber(st.corpus_count) or 0,
                crashes = tonumber(st.saved_crashes or st.unique_crashes) or 0, hangs = tonumber(st.saved_hangs) or 0,
                log = c.log }
    sum.instances[#sum.instances + 1] = i
    sum.execs = sum.execs + i.execs
    log(("  %-16s %s  %9d execs  %7.0f exec/s  corpus %4d  crashes %d  hangs %d"):format(c.name,
      c.status == 0 and "ok    " or ("status " .. tostring(c.status)), i.execs, i.exec_per_s, i.corpus, i.crashes, i.hangs))
    if c.status ~= 0 then
      failed[#failed + 1] = c.name
      log("    " .. tail(c.log, 3):gsub("\n", "\n    "))
      local mv_log = opts.dir .. "/" .. c.name .. "/moonvisor.log"
      if read_file(mv_log) then log("    moonvisor.log: " .. tail(mv_log, 2):gsub("\n", "\n    ")) end
    end
  end
  sum.exec_per_s = sum.execs / math.max(el, 1e-3)
  sum.exec_per_cpu_s = sum.execs / math.max(cpu or 0, 1e-3)
  log(("campaign: %d instances, %d execs in %.1f s (%.0f exec/s; %.1f CPU s, %.0f execs per CPU s), sync directory %s")
    :format(#cmds, sum.execs, el, sum.exec_per_s, cpu or 0, sum.exec_per_cpu_s, opts.dir))
  if #failed == #cmds then
    error(("campaign: every instance failed (%s): see %s/.logs/"):format(table.concat(failed, ", "), opts.dir), 0)
  end
  return sum
end

-- {======================================================= the two kinds

local function names(opts, n)
  local prefix = opts.prefix or campaign.hostname()
  local list = {}
  for k = 1, n do list[k] = ("%s-%d"):format(prefix, k) end
  return list
end

function campaign.workers(opts)
  local jobs = opts.jobs or 1
  local cmds = {}
  for k, name in ipairs(names(opts, jobs)) do
    local words = { q(opts.exe), q(opts.script), "--worker", q(name), "--sync", q(opts.dir),
                    "--seed", tostring((opts.seed or 1) + k - 1) }
    if opts.seconds then words[#words + 1] = "--seconds " .. tostring(opts.seconds) end
    for _, a in ipairs(opts.args or {}) do words[#words + 1] = q(a) end
    cmds[k] = { name = name, cmd = table.concat(words, " ") }
  end
  local log = opts.log or print
  log(("campaign: %d moonvisor workers in %s%s"):format(jobs, opts.dir,
    opts.seconds and (" for %s s"):format(opts.seconds) or ""))
  local el, cpu = run_all(opts.dir, cmds)
  return summarize(opts, cmds, el, cpu)
end

function campaign.afl(opts)
  local afl, version = campaign.find_afl()
  local jobs = opts.jobs or 1
  local dir = opts.dir
  os.execute(("mkdir -p %s"):format(q(dir .. "/.seeds")))
  local input = opts.corpus
  if type(input) ~= "string" then
    input = dir .. "/.seeds/in"
    os.execute(("mkdir -p %s"):format(q(input)))
    for i, d in ipairs(opts.corpus or { "\0" }) do write_file(("%s/seed-%03d"):format(input, i), d) end
  end
  local dict = opts.dict
  if type(dict) == "table" then
    campaign.write_dict(dir .. "/.seeds/dict.txt", dict)
    dict = dir .. "/.seeds/dict.txt"
  end
  local instance = names(opts, jobs)
  if opts.main ~= false then instance[1] = opts.main_name or "main" end
  local env = "AFL_NO_UI=1 AFL_AUTORESUME=1 AFL_IMPORT_FIRST=1 AFL_FORKSRV_INIT_TMOUT=${AFL_FORKSRV_INIT_TMOUT:-60000}"
  local cmds = {}
  for k, name in ipairs(instance) do
    local words = { env, q(afl), "-i", q(input), "-o", q(dir),
                    (k == 1 and opts.main ~= false) and "-M" or "-S", q(name) }
    if opts.seconds then words[#words + 1] = "-V " .. math.max(1, math.floor(opts.seconds + 0.5)) end
    if opts.timeout then words[#words + 1] = "-t " .. tostring(opts.timeout) end
    if dict then words[#words + 1] = "-x " .. q(dict) end
    if opts.seed then words[#words + 1] = "-s " .. tostring(opts.seed + k - 1) end
    if opts.afl_args then words[#words + 1] = opts.afl_args end
    words[#words + 1] = "-- " .. q(opts.exe) .. " " .. q(opts.script) .. " @@"
    cmds[k] = { name = name, cmd = table.concat(words, " ") }
  end
  local log = opts.log or print
  log(("campaign: %d afl-fuzz instances (%s, %s) in %s%s"):format(jobs, version.text, afl, dir,
    opts.seconds and (" for %s s"):format(opts.seconds) or ""))
  local el, cpu = run_all(dir, cmds)
  return summarize(opts, cmds, el, cpu)
end

return campaign
