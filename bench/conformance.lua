-- bench/conformance.lua - differential conformance of the soft backend
-- against KVM (moonvisor.conformance): random CPL3 instruction sequences
-- on both, every difference minimised and grouped by class, the classes
-- checked against the documented deviations of spec/conformance_known.lua.
--
--   build/moonvisor bench/conformance.lua [--cases N] [--seed S] [--first I]
--        [--ref kvm] [--other soft] [--only PATTERN] [--minimise N|all|new]
--        [--max-classes N] [--known FILE | --no-known] [--timeout-ms MS] [--classes]
--   build/moonvisor bench/conformance.lua --seed S --case I      replays one case, verbosely
--   build/moonvisor bench/conformance.lua --reproducers           runs each documented reproducer
--
-- The seed is a number, a commit id (its first 16 hex digits: `make
-- conformance` passes `git rev-parse HEAD`) or any text.  Exit status 0
-- when no tester failure happened and the classes found are exactly the
-- documented ones (with --no-known: no tester failure); the last line is
-- "spec: N passed, M failed" over those checks, for .ci/run.
local conformance = require "moonvisor.conformance"
local known = require "moonvisor.conformance.known"
local report = require "moonvisor.conformance.report"
local gen = require "moonvisor.conformance.gen"

local opts = { cases = 500, seed = "0", ref = "kvm", other = "soft", known = "spec/conformance_known.lua" }
local i = 1
local function value(name)
  i = i + 1
  return arg[i] or error("bench/conformance.lua: " .. name .. " needs a value")
end
while i <= #arg do
  local a = arg[i]
  if a == "--cases" then opts.cases = math.tointeger(tonumber(value(a)))
  elseif a == "--seed" then opts.seed = value(a)
  elseif a == "--first" then opts.first = math.tointeger(tonumber(value(a)))
  elseif a == "--case" then opts.case = math.tointeger(tonumber(value(a)))
  elseif a == "--ref" then opts.ref = value(a)
  elseif a == "--other" then opts.other = value(a)
  elseif a == "--only" then opts.only = value(a)
  elseif a == "--minimise" then
    local v = value(a)
    opts.minimise = v == "all" and math.huge or v == "new" and "new" or math.tointeger(tonumber(v))
  elseif a == "--classes" then opts.all_classes = true
  elseif a == "--max-classes" then opts.max_classes = math.tointeger(tonumber(value(a)))
  elseif a == "--known" then opts.known = value(a)
  elseif a == "--no-known" then opts.known = nil
  elseif a == "--timeout-ms" then opts.timeout_ms = math.tointeger(tonumber(value(a)))
  elseif a == "--reproducers" then opts.reproducers = true
  else error("bench/conformance.lua: unknown argument " .. a) end
  i = i + 1
end
if opts.cases == nil or opts.cases < 0 then error("bench/conformance.lua: --cases wants a count") end

local seed = conformance.seed(opts.seed)
local seed_text = report.seed(seed)
local only = opts.only and (" --only '" .. opts.only .. "'") or ""
local function out(s) io.stdout:write(s, "\n") io.stdout:flush() end

-- {============================================================ one case

if opts.case then
  local c, res, full = conformance.replay { seed = seed, index = opts.case, only = opts.only, ref = opts.ref,
                                            other = opts.other, timeout_ms = opts.timeout_ms,
                                            max_classes = opts.max_classes }
  out(("case %d of seed %s%s (%s vs %s)"):format(c.index, seed_text, only, opts.ref, opts.other))
  out("initial state:")
  out(report.init(c.init))
  out(("instructions (%d, then the epilogue's syscall):"):format(#c.seq))
  out(report.seq(c.seq, "  "))
  if not full[1] then out("whole case: tester failure: " .. tostring(full[2]))
  elseif #full[1] == 0 then out("whole case: the backends agree")
  else
    out(("whole case: exit %s vs %s; differences:"):format(full[3].exit.type, full[4].exit.type))
    for _, d in ipairs(full[2]) do out("    " .. d) end
  end
  for _, class in ipairs(res.classes) do out(report.class(class, opts.ref, opts.other)) end
  if res.failure then out("tester failure: " .. res.failure) end
  os.exit(res.failure and 1 or 0)
end

-- {============================================================ reproducers

if opts.reproducers then
  local entries = known.select(known.load(opts.known), known.kind(opts.ref))
  local ref, other, t = conformance.machines(opts)
  local bad = 0
  for _, e in ipairs(entries) do
    local class, err = known.reproduce(t, e)
    local ok = class and known.match({ e }, class)
    if not ok then bad = bad + 1 end
    out(("%-26s %s"):format(e.id, err and ("failure: " .. err) or not class and "GONE: the backends agree"
      or ok and ("reproduced: " .. class.key) or ("OTHER CLASS: " .. class.key)))
    if class and not class.harness then out(report.class(class, opts.ref, opts.other)) end
  end
  ref:close()
  other:close()
  os.exit(bad == 0 and 0 or 1)
end

-- {============================================================ a run

out(("conformance: %d cases, seed %s%s, %s against %s"):format(opts.cases, seed_text, only, opts.other, opts.ref))
local entries, kind
if opts.known then
  kind = known.kind(opts.ref)
  entries = known.select(known.load(opts.known), kind)
  out(("documented deviations: %s, those for a %s reference"):format(opts.known, kind))
end
local res = conformance.run {
  seed = seed, cases = opts.cases, first = opts.first, ref = opts.ref, other = opts.other, only = opts.only,
  minimise = opts.minimise, max_classes = opts.max_classes, timeout_ms = opts.timeout_ms, known = entries,
  progress = function(done, total, r)
    local line = ("  %d/%d cases, %d differing, %d classes, %d failures"):format(done, total, r.mismatching, #r.order,
      #r.failures)
    io.stderr:write(line, "\n")
    io.stderr:flush()
  end,
}
local kc = res.known

out("")
out(report.table(res, not opts.all_classes and 40 or nil))
if entries then
  out("")
  out(report.entries(res, entries))
end
out("")
for _, key in ipairs(res.order) do
  local c = res.classes[key]
  if entries and not c.known then
    local ex = c.example_index or c.first
    out(("NEW  %s  (%d cases; replay: build/moonvisor bench/conformance.lua --seed %s%s --case %d)"):format(key, c.count,
      seed_text, only, ex))
    if c.example then out(report.class(c.example, opts.ref, opts.other)) end
  end
end
local passed, failed = 0, 0
for _, f in ipairs(res.failures) do
  out(("TESTER FAILURE  case %d of seed %s%s: %s"):format(f.index, seed_text, only, f.message))
  if f.index > 0 then out(("  replay: build/moonvisor bench/conformance.lua --seed %s%s --case %d"):format(seed_text, only, f.index)) end
end
if #res.failures > 0 then failed = failed + 1 else passed = passed + 1 end
if kc then
  for _, st in ipairs(kc.stale) do
    out(("STALE  %s: its reproducer %s: remove the entry from %s, or fix its reproducer"):format(st.entry.id,
      st.got and ("now gives " .. st.got.key) or "no longer differs", opts.known))
  end
  for _, f in ipairs(kc.failures) do out(("TESTER FAILURE  reproducer %s: %s"):format(f.id, f.message)) end
  local reproduced, only_rep = 0, {}
  for id in pairs(kc.reproduced) do
    reproduced = reproduced + 1
    if not kc.seen[id] then only_rep[#only_rep + 1] = id end
  end
  table.sort(only_rep)
  out(("documented deviations: %d, %d reproduced by their reproducer, %d hit by the random cases%s"):format(#entries,
    reproduced, reproduced - #only_rep, #only_rep > 0 and (" (not hit: " .. table.concat(only_rep, ", ") .. ")") or ""))
  if #kc.new == 0 then passed = passed + 1 else failed = failed + 1 end
  if #kc.stale == 0 then passed = passed + 1 else failed = failed + 1 end
  if #kc.failures == 0 then passed = passed + 1 else failed = failed + 1 end
end

out(("conformance: %s; %d classes%s, %d tester failures; %d runs, %.1f s (%.1f s generating, %.1f s in nasm); seed %s%s"):format(
  report.rates(res, entries), #res.order, kc and (" (" .. #kc.new .. " new, " .. #kc.stale .. " stale entries)") or "",
  #res.failures, res.runs, res.seconds, res.time.gen, res.time.asm, seed_text, only))
out(("spec: %d passed, %d failed"):format(passed, failed))
os.exit(failed == 0 and 0 or 1)
