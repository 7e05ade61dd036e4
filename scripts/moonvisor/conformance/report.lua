-- conformance/report.lua - text output of the conformance tester: a case
-- (its seed, index, initial state and instructions), a class with its
-- minimal sequence and differences, the table of classes of a run and the
-- summary lines CI reads.
local state = require "moonvisor.conformance.state"

local report = {}

local function hex(v) return ("0x%x"):format(v) end
local function bytes_hex(s) return (s:reverse():gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end

function report.seed(seed) return ("0x%016x"):format(seed) end

-- The instructions of seq, one per line (macro lines joined with " ; ").
function report.seq(seq, indent)
  local out = {}
  for i, inst in ipairs(seq) do
    out[#out + 1] = ("%s%2d  %-40s  (%s)"):format(indent or "", i, inst.text:gsub("\n", " ; "), inst.form)
  end
  return table.concat(out, "\n")
end

function report.init(init)
  local r, f = init.regs, init.fpu
  local out, line = {}, {}
  for i, name in ipairs(state.GPRS) do
    line[#line + 1] = ("%-3s %016x"):format(name, r[name] & -1)
    if i % 4 == 0 then out[#out + 1] = "  " .. table.concat(line, "  ") line = {} end
  end
  out[#out + 1] = ("  rflags %s  fcw %s  fsw %s  ftw %s  mxcsr %s"):format(hex(r.rflags), hex(f.fcw), hex(f.fsw),
    hex(f.ftw), hex(f.mxcsr))
  local top = (f.fsw >> 11) & 7
  for i = 1, 8 do
    if f.ftw >> ((top + i - 1) & 7) & 1 == 1 then out[#out + 1] = ("  st%d %s"):format(i - 1, bytes_hex(f.st[i])) end
  end
  for i = 1, 16, 2 do
    out[#out + 1] = ("  xmm%-2d %s  xmm%-2d %s"):format(i - 1, bytes_hex(f.xmm[i]), i, bytes_hex(f.xmm[i + 1]))
  end
  out[#out + 1] = ("  data window 0x%x+0x%x from the case's rng; r15 = 0x%x, rsp = 0x%x"):format(state.WINDOW,
    state.WINDOW_SIZE, state.R15, state.STACK)
  return table.concat(out, "\n")
end

function report.class(class, ref, other)
  local out = { ("class %s"):format(class.key) }
  if class.seq and #class.seq > 0 then
    out[#out + 1] = ("  %s sequence (%d of the first %d instructions):"):format(
      class.minimised and "minimal" or "failing", #class.seq, class.prefix or #class.seq)
    out[#out + 1] = report.seq(class.seq, "  ")
  end
  out[#out + 1] = ("  differences (%s vs %s):"):format(ref or "reference", other or "other")
  for _, d in ipairs(class.details or {}) do out[#out + 1] = "    " .. d end
  return table.concat(out, "\n")
end

-- The table of a run's classes, most frequent first (at most `limit` rows).
function report.table(res, limit)
  local keys = {}
  for _, k in ipairs(res.order) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    local ca, cb = res.classes[a].count, res.classes[b].count
    if ca ~= cb then return ca > cb end
    return a < b
  end)
  local out = { ("%6s  %-8s  %-22s  %s"):format("cases", "example", "known", "class (first differing instruction: state that differs)") }
  for n, k in ipairs(keys) do
    if limit and n > limit then
      out[#out + 1] = ("  ... %d more classes (--classes lists them all)"):format(#keys - limit)
      break
    end
    local c = res.classes[k]
    local ex = c.example_index or c.first
    local len = c.example and c.example.seq and #c.example.seq or 0
    out[#out + 1] = ("%6d  %-8s  %-22s  %s"):format(c.count, ex == 0 and "harness" or ("#" .. ex .. "/" .. len),
      c.known or "NEW", k)
  end
  return table.concat(out, "\n")
end

-- Cases and classes per documented deviation (res.known must be set, by
-- conformance.run with opts.known), new classes last.
function report.entries(res, entries)
  local by, order = {}, {}
  local function slot(id)
    if not by[id] then by[id] = { cases = {}, classes = 0 } order[#order + 1] = id end
    return by[id]
  end
  for _, e in ipairs(entries) do slot(e.id) end
  for _, key in ipairs(res.order) do slot(res.classes[key].known or "(new)").classes = slot(res.classes[key].known or "(new)").classes + 1 end
  for index, keys in pairs(res.case_keys) do
    for _, key in ipairs(keys) do slot(res.classes[key].known or "(new)").cases[index] = true end
  end
  local side = {}
  for _, e in ipairs(entries) do side[e.id] = e.side end
  local out = { ("%-26s %-9s %6s %8s  %s"):format("documented deviation", "side", "cases", "classes", "reproducer") }
  for _, id in ipairs(order) do
    local n = 0
    for _ in pairs(by[id].cases) do n = n + 1 end
    local rep = res.known and res.known.reproduced[id] and res.known.reproduced[id].key or ""
    if id == "(new)" and by[id].classes == 0 then goto continue end
    out[#out + 1] = ("%-26s %-9s %6d %8d  %s"):format(id, side[id] or "", n, by[id].classes, rep)
    ::continue::
  end
  return table.concat(out, "\n")
end

-- How many cases differ, and how many through each side's deviations.
function report.rates(res, entries)
  local side = {}
  for _, e in ipairs(entries or {}) do side[e.id] = e.side end
  local counts, diff = {}, 0
  for _, keys in pairs(res.case_keys) do
    diff = diff + 1
    local seen = {}
    for _, key in ipairs(keys) do
      local id = res.classes[key].known
      local s = id and side[id] or "new"
      if not seen[s] then seen[s] = true counts[s] = (counts[s] or 0) + 1 end
    end
  end
  local function pct(n) return res.ran > 0 and 100 * n / res.ran or 0 end
  local line = ("%d of %d cases differ (%.1f%%)"):format(diff, res.ran, pct(diff))
  if entries then
    local parts = {}
    for _, s in ipairs { "unicorn", "moonvisor", "reference", "new" } do
      parts[#parts + 1] = ("%s %d (%.1f%%)"):format(s, counts[s] or 0, pct(counts[s] or 0))
    end
    line = line .. "; cases with a difference by side: " .. table.concat(parts, ", ")
  end
  return line
end

return report
