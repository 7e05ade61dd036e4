-- moonvisor.conformance - differential conformance of two backends: random
-- CPL3 instruction sequences run from identical state on a reference
-- (kvm) and the backend under test (soft), every difference minimised and
-- grouped by class.  The pieces: isa (the instruction table), state and
-- gen (random cases), asm (nasm), machine (one backend), compare, tester
-- (culprit search and minimising), harness (syscall and reset checks),
-- known (the table of documented deviations), report.  bench/conformance.lua
-- is the command line.
--
--   conformance.run{ seed, cases = 500, first = 1, ref = "kvm", other = "soft",
--                    only = pattern, known = entries (conformance.known.load),
--                    minimise = 1 (classes minimised per key; math.huge: all; "new": the
--                               first of each key no known entry covers),
--                    max_classes = 2, timeout_ms, batch = 250, progress = function(done, total, res) }
--   -> { seed, cases, ran, mismatching, classes = { [key] = agg }, order = { key... },
--        case_keys = { [index] = { key... } }, failures = { { index, message } }, runs, seconds,
--        known = conformance.known.check's report (with opts.known),
--        time = { gen = s, asm = s } (generating and assembling; the rest is running) }
--   agg = { key, form, items, count, first = index, example = class (the first minimised one),
--           known = entry id or nil }
--   conformance.replay{ seed, index, ... } -> case, result (every class minimised)
local gen = require "moonvisor.conformance.gen"
local asm = require "moonvisor.conformance.asm"
local machine = require "moonvisor.conformance.machine"
local tester = require "moonvisor.conformance.tester"
local harness = require "moonvisor.conformance.harness"
local known = require "moonvisor.conformance.known"

local conformance = {}

-- A seed from a number, a hex string (a commit id: its first 16 digits) or any string.
function conformance.seed(s)
  if type(s) == "number" then return math.tointeger(s) or error("conformance.seed: not an integer: " .. s) end
  s = tostring(s)
  local hex = s:match("^0[xX](%x+)$") or s:match("^(%x+)$")
  if hex and #hex > 8 then return tonumber("0x" .. hex:sub(1, 16)) end
  if s:match("^%d+$") then return math.tointeger(tonumber(s)) end
  if hex then return tonumber("0x" .. hex) end
  local h = 0xcbf29ce484222325                     -- FNV-1a of the text
  for i = 1, #s do h = (h ~ s:byte(i)) * 0x100000001b3 end
  return h
end

local now = require("moonvisor.core").clock   -- seconds, CLOCK_MONOTONIC
conformance.now = now

function conformance.machines(opts)
  local ref = machine.new(opts.ref or "kvm", opts)
  local other = machine.new(opts.other or "soft", opts)
  return ref, other, tester.new(ref, other)
end

local function add_class(res, class, index)
  local agg = res.classes[class.key]
  if not agg then
    agg = { key = class.key, form = class.form, items = class.items, count = 0, first = index }
    res.classes[class.key] = agg
    res.order[#res.order + 1] = class.key
  end
  agg.count = agg.count + 1
  if not agg.example or (class.minimised and not agg.example.minimised) then
    agg.example, agg.example_index = class, index
  end
end

function conformance.run(opts)
  local seed = conformance.seed(opts.seed or 0)
  local n, first, batch = opts.cases or 500, opts.first or 1, opts.batch or 250
  local res = { seed = seed, cases = n, ran = 0, mismatching = 0, classes = {}, order = {}, case_keys = {},
                failures = {}, runs = 0, time = { gen = 0, asm = 0 } }
  local t0 = now()
  local ref, other, t = conformance.machines(opts)
  -- the harness checks, once
  for _, check in ipairs { function() return harness.syscall(ref, other) end,
                           function() return harness.reset(ref.backend, other.backend) end } do
    local class, err = check()
    if err then res.failures[#res.failures + 1] = { index = 0, message = "harness: " .. err } end
    if class then add_class(res, class, 0) end
  end
  local minimised = {}
  local budget = opts.minimise or 1
  local case_opts = { max_classes = opts.max_classes, minimise = function(key, class)
    if budget == "new" then
      if opts.known and known.match(opts.known, class) then return false end
    end
    minimised[key] = (minimised[key] or 0) + 1
    return minimised[key] <= (budget == "new" and 1 or budget)
  end }
  local index = first
  while index < first + n do
    local t1 = now()
    local cases = {}
    for i = index, math.min(first + n, index + batch) - 1 do cases[#cases + 1] = gen.case(seed, i, opts.only) end
    local seqs = {}
    for i, c in ipairs(cases) do seqs[i] = c.seq end
    local t2 = now()
    asm.assemble(seqs)
    local t3 = now()
    res.time.gen, res.time.asm = res.time.gen + (t2 - t1), res.time.asm + (t3 - t2)
    for _, c in ipairs(cases) do
      local out = t:case(c, case_opts)
      res.ran = res.ran + 1
      if out.failure then
        res.failures[#res.failures + 1] = { index = c.index, message = out.failure }
        ref:reopen()
        other:reopen()
      elseif #out.classes > 0 then
        res.mismatching = res.mismatching + 1
        local keys = {}
        for _, class in ipairs(out.classes) do
          add_class(res, class, c.index)
          keys[#keys + 1] = class.key
        end
        res.case_keys[c.index] = keys
      end
    end
    index = index + #cases
    if opts.progress then opts.progress(res.ran, n, res) end
  end
  if opts.known then res.known = known.check(res, opts.known, t) end
  res.runs = t.runs
  res.seconds = now() - t0
  ref:close()
  other:close()
  return res
end

-- One case, every class minimised: for replaying a finding.
function conformance.replay(opts)
  local seed = conformance.seed(opts.seed or 0)
  local c = gen.case(seed, opts.index, opts.only)
  asm.assemble(c.seq)
  local ref, other, t = conformance.machines(opts)
  local out = t:case(c, { max_classes = opts.max_classes })
  local full = { t:check(c.init, c.seq) }
  ref:close()
  other:close()
  return c, out, full
end

return conformance
