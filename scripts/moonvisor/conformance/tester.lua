-- conformance/tester.lua - runs a case on two machines (the reference,
-- normally kvm, and the backend under test, normally soft), compares,
-- finds the instruction that introduces each difference and minimises.
--
--   tester:check(init, seq)  -> items, details   (or nil, failure message)
--   tester:case(case, opts)  -> { classes = { class... }, failure = msg or nil }
--     class = { key, form, items, details, prefix = n, seq = minimal sequence, minimised = bool }
--
-- Finding the culprit: prefixes of the sequence are run (binary search) to
-- the shortest one that differs, whose last instruction is the culprit; the
-- class is its form (with its FP mode: compare.tag) and the state items
-- that differ.  Minimising deletes
-- earlier instructions while the same class reproduces.  A case can hold
-- several classes: after one is found its culprit is deleted and the rest
-- checked again (up to opts.max_classes, default 2).
local gen = require "moonvisor.conformance.gen"
local machine = require "moonvisor.conformance.machine"
local compare = require "moonvisor.conformance.compare"
local state = require "moonvisor.conformance.state"

local tester = {}
local Tester = {}
Tester.__index = Tester

tester.MAX_CLASSES = 2
tester.MAX_PASSES = 3

function tester.new(ref, other)
  return setmetatable({ ref = ref, other = other, runs = 0 }, Tester)
end

-- The masks for a run of seq that ended at `rip`: the undefined flags
-- before and after each instance whose bytes hold or end at rip, and what
-- the instance itself leaves undefined (a fault inside a macro may follow
-- a setup line that already left a flag undefined).
local function masks_at(seq, offsets, rips)
  local m, cc = 0, 0
  for _, rip in ipairs(rips) do
    local at = rip - state.CODE
    for i = 1, #seq do
      if offsets[i] <= at and at <= offsets[i + 1] then
        local u0, c0 = gen.undefined(seq, i - 1)
        local u1, c1 = gen.undefined(seq, i)
        m, cc = m | u0 | u1 | seq[i].u, cc | c0 | c1 | seq[i].cc_u
      end
    end
  end
  return { rflags = m, cc = cc }
end

-- Runs seq from init on both machines and compares.
function Tester:check(init, seq)
  local code, offsets = machine.code(seq)
  self.runs = self.runs + 1
  local a, err = self.ref:run(code, init)
  if not a then return nil, self.ref.backend .. ": " .. err end
  local b, err2 = self.other:run(code, init)
  if not b then return nil, self.other.backend .. ": " .. err2 end
  local masks
  if a.closing and b.closing then
    local u, cu = gen.undefined(seq)
    masks = { rflags = u, cc = cu }
  else
    local rips = {}
    for _, r in ipairs { a, b } do
      if not r.closing then rips[#rips + 1] = r.exit.rip or r.regs.rip end
    end
    masks = masks_at(seq, offsets, rips)
  end
  masks.form = seq[#seq] and seq[#seq].form
  local items, details = compare.diff(a, b, masks)
  -- the first instance a run ended in (an exception, hlt, io or mem exit)
  local stop
  for _, r in ipairs { a, b } do
    local rip = not r.closing and (r.exit.rip or r.regs.rip)
    if rip then
      for i = 1, #seq do
        if offsets[i] <= rip - state.CODE and rip - state.CODE < offsets[i + 1] then
          stop = math.min(stop or i, i)
        end
      end
    end
  end
  return items, details, a, b, stop
end

local function without(seq, j)
  local out = {}
  for i, inst in ipairs(seq) do if i ~= j then out[#out + 1] = inst end end
  return out
end
local function prefix(seq, n) return table.move(seq, 1, n, 1, {}) end

-- Deletes instructions before the culprit (the last one) while the class
-- `key` still reproduces.  Returns the shortest sequence found and its
-- differences (nil when nothing could be deleted), or nil and a failure
-- message.
function Tester:minimise(init, seq, key)
  local cur, cur_details = seq, nil
  for _ = 1, tester.MAX_PASSES do
    local changed = false
    for j = #cur - 1, 1, -1 do
      local cand = without(cur, j)
      if gen.valid(cand) then
        local items, details = self:check(init, cand)
        if not items then return nil, details end
        if #items > 0 and compare.key(cand[#cand].form .. compare.tag(cand[#cand].form, compare.fp_mode(init.fpu, cand, #cand)),
                                 items) == key then
          cur, cur_details, changed = cand, details, true
        end
      end
    end
    if not changed then break end
  end
  return cur, cur_details
end

-- Classifies the differences of one case.  opts.minimise(key, class) says
-- whether to minimise a class (default: always).
function Tester:case(c, opts)
  opts = opts or {}
  local out = { classes = {} }
  local seq = c.seq
  local agree = 0      -- a prefix length known to agree (the empty one is taken to)
  for _ = 1, opts.max_classes or tester.MAX_CLASSES do
    local items, err, _, _, stop = self:check(c.init, seq)
    if not items then out.failure = err return out end
    if #items == 0 then break end
    -- binary search for the shortest differing prefix; the first probe is
    -- the instruction a run stopped in, when one did (a likely culprit)
    local lo, hi, hi_items, hi_details = agree, #seq, items, nil
    while hi - lo > 1 do
      local mid = (lo + hi) // 2
      if stop and stop > lo and stop < hi then mid, stop = stop, nil end
      local m_items, m_details = self:check(c.init, prefix(seq, mid))
      if not m_items then out.failure = m_details return out end
      if #m_items > 0 then hi, hi_items, hi_details = mid, m_items, m_details else lo = mid end
    end
    if hi == 1 then   -- ... unless loading the initial state already differs
      local e_items, e_details = self:check(c.init, {})
      if not e_items then out.failure = e_details return out end
      if #e_items > 0 then
        out.classes[#out.classes + 1] = { key = compare.key("(initial state)", e_items), form = "(initial state)",
                                          items = e_items, details = e_details, prefix = 0, seq = {}, minimised = true }
        break
      end
    end
    if not hi_details then
      local d_items, d_details = self:check(c.init, prefix(seq, hi))
      if not d_items then out.failure = d_details return out end
      hi_items, hi_details = d_items, d_details
    end
    local culprit = seq[hi]
    local form = culprit.form .. compare.tag(culprit.form, compare.fp_mode(c.init.fpu, seq, hi))
    local key = compare.key(form, hi_items)
    local class = { key = key, form = form, items = hi_items, details = hi_details, prefix = hi,
                    seq = prefix(seq, hi), minimised = false }
    if #hi_items > 0 and (not opts.minimise or opts.minimise(key, class)) then
      local min, mdetails = self:minimise(c.init, class.seq, key)
      if not min then out.failure = mdetails return out end
      class.seq, class.minimised = min, true
      class.details = mdetails or class.details
    end
    out.classes[#out.classes + 1] = class
    local rest = without(seq, hi)
    if #hi_items == 0 or not gen.valid(rest) then break end
    seq, agree = rest, hi - 1       -- the rest's first hi - 1 instructions are the prefix that agreed
  end
  return out
end

return tester
