-- conformance/known.lua - the table of documented deviations
-- (spec/conformance_known.lua) and the check a conformance run must pass:
-- the classes it found are exactly the documented ones.
--
-- An entry: { id, side = "unicorn" | "moonvisor" | "reference", hosts = { kinds } (optional), cause = text,
--             forms = { Lua patterns over a class's form }, items = { state items },
--             reproducer = { form, code = { nasm lines }, state = state.quiet overrides
--                            (or seed and index: the initial state of that generated case),
--                            undefined = "flags", cc = "0123" }  or  { harness = "syscall" | "reset" },
--             later = true (optional: the deviation can surface at a later instruction) }
-- A class belongs to the first entry one of whose patterns matches its
-- form and whose items include all of the class's; failing that, to the
-- first entry with `later` that covers its items and one of whose forms
-- an instruction of the class's sequence (class.seq, or its example's) has.
-- A reference that leaves garbage in the flags shows it wherever they are
-- next read, which need not be at the instruction itself (QEMU's stale
-- lazy flags).
--
-- known.check(res, entries, tester) -> report:
--   new      classes of the run no entry covers             (fail: document or fix them)
--   stale    entries whose reproducer no longer gives their class (fail: remove or fix the entry)
--   seen     entry id -> keys of the run's classes it covers
-- An entry the random cases did not hit still counts as present when its
-- reproducer reproduces it (a bounded run need not hit every rare class).
local gen = require "moonvisor.conformance.gen"
local asm = require "moonvisor.conformance.asm"
local state = require "moonvisor.conformance.state"
local compare = require "moonvisor.conformance.compare"
local harness = require "moonvisor.conformance.harness"

local known = {}

local ITEMS = {}
for _, i in ipairs { "exit.type", "exit.vector", "exit.error_code", "exit.rip", "exit.mem", "cr2", "gpr", "rsp", "rip",
                     "CF", "PF", "AF", "ZF", "SF", "OF", "DF", "RF", "AC", "rflags", "fcw", "fsw", "fsw.flags", "fsw.cc",
                     "fsw.top", "fsw.stack", "ftw", "st", "st.nan", "st.precision", "mxcsr.flags", "mxcsr", "xmm",
                     "xmm.nan", "xmm.denormal", "mem", "rcx", "r11" } do
  ITEMS[i] = true
end

function known.load(path)
  local chunk, err = loadfile(path)
  if not chunk then error("conformance.known.load: " .. err, 2) end
  local entries = chunk()
  local ids = {}
  for i, e in ipairs(entries) do
    local where = ("conformance.known.load: %s: entry %d (%s)"):format(path, i, tostring(e.id))
    assert(type(e.id) == "string" and not ids[e.id], where .. ": id missing or repeated")
    ids[e.id] = true
    assert(e.side == "unicorn" or e.side == "moonvisor" or e.side == "reference", where .. ": side must be unicorn, moonvisor or reference")
    assert(type(e.cause) == "string", where .. ": cause missing")
    assert(type(e.forms) == "table" and #e.forms > 0, where .. ": forms missing")
    assert(type(e.items) == "table" and #e.items > 0, where .. ": items missing")
    for _, it in ipairs(e.items) do assert(ITEMS[it], where .. ": unknown item " .. tostring(it)) end
    assert(e.later == nil or type(e.later) == "boolean", where .. ": later must be true, false or absent")
    local r = e.reproducer
    assert(type(r) == "table" and (r.harness or (r.form and type(r.code) == "table")), where .. ": reproducer missing")
    e.item_set = {}
    for _, it in ipairs(e.items) do e.item_set[it] = true end
  end
  return entries
end

-- What runs the reference's CPL3 code: "tcg" when the CPU KVM runs on is
-- QEMU's TCG (the nested test VM), else mv.host(backend).kind.
function known.kind(backend)
  local f = io.open("/proc/cpuinfo", "r")
  local text = f and f:read("a") or ""
  if f then f:close() end
  if text:match("\nmodel name%s*:%s*QEMU TCG") or text:match("^model name%s*:%s*QEMU TCG") then return "tcg" end
  return require("moonvisor").host(backend).kind
end

-- The entries that apply to a reference of this kind (entry.hosts).
function known.select(entries, kind)
  local out = {}
  for _, e in ipairs(entries) do
    local ok = e.hosts == nil
    for _, h in ipairs(e.hosts or {}) do ok = ok or h == kind end
    if ok then out[#out + 1] = e end
  end
  return out
end

local function matches(forms, form)
  for _, p in ipairs(forms) do
    if form:find(p) then return true end
  end
  return false
end

-- Whether an instruction of class's sequence has one of the forms.
local function seq_holds(forms, class)
  local seq = class.seq or (class.example and class.example.seq) or {}
  for _, inst in ipairs(seq) do
    if inst.form and matches(forms, inst.form) then return true end
  end
  return false
end

local function covers(e, class)
  for _, it in ipairs(class.items) do
    if not e.item_set[it] then return false end
  end
  return true
end

function known.match(entries, class)
  for _, e in ipairs(entries) do
    if matches(e.forms, class.form) and covers(e, class) then return e end
  end
  for _, e in ipairs(entries) do
    if e.later and seq_holds(e.forms, class) and covers(e, class) then return e end
  end
  return nil
end

-- The case of an entry's reproducer: { init, seq }.  The initial state is
-- state.quiet(r.state), or that of a generated case (r.seed, r.index).
function known.case(entry)
  local r = entry.reproducer
  local init = r.seed and gen.case(r.seed, r.index).init or state.quiet(r.state)
  local seq = {}
  for i, line in ipairs(r.code) do
    local last = i == #r.code
    seq[i] = gen.literal(line, last and r.form or line, last and r.undefined or nil, last and r.cc or nil)
  end
  asm.assemble(seq)
  return { init = init, seq = seq }
end

-- Runs an entry's reproducer: the class it gives (nil when the backends
-- agree), or nil and a failure message.
function known.reproduce(t, entry)
  local r = entry.reproducer
  if r.harness == "syscall" then return harness.syscall(t.ref, t.other) end
  if r.harness == "reset" then return harness.reset(t.ref.backend, t.other.backend) end
  local c = known.case(entry)
  local items, details = t:check(c.init, c.seq)
  if not items then return nil, details end
  if #items == 0 then return nil end
  local form = r.form .. compare.tag(r.form, c.init.fpu)
  return { key = compare.key(form, items), form = form, items = items, details = details, seq = c.seq }
end

function known.check(res, entries, t)
  local report = { new = {}, stale = {}, seen = {}, reproduced = {}, failures = {} }
  for _, key in ipairs(res.order) do
    local agg = res.classes[key]
    local e = known.match(entries, agg)
    if e then
      report.seen[e.id] = report.seen[e.id] or {}
      table.insert(report.seen[e.id], key)
      agg.known = e.id
    else
      report.new[#report.new + 1] = agg
    end
  end
  for _, e in ipairs(entries) do
    local class, err = known.reproduce(t, e)
    if err then
      report.failures[#report.failures + 1] = { id = e.id, message = err }
    elseif class and known.match({ e }, class) then
      report.reproduced[e.id] = class
    else
      report.stale[#report.stale + 1] = { entry = e, got = class }
    end
  end
  return report
end

return known
