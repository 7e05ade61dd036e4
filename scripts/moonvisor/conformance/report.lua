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

-- The table of a run's classes, most frequent first.
function report.table(res)
  local keys = {}
  for _, k in ipairs(res.order) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    local ca, cb = res.classes[a].count, res.classes[b].count
    if ca ~= cb then return ca > cb end
    return a < b
  end)
  local out = { ("%6s  %-8s  %-22s  %s"):format("cases", "example", "known", "class (first differing instruction: state that differs)") }
  for _, k in ipairs(keys) do
    local c = res.classes[k]
    local ex = c.example_index or c.first
    local len = c.example and c.example.seq and #c.example.seq or 0
    out[#out + 1] = ("%6d  %-8s  %-22s  %s"):format(c.count, ex == 0 and "harness" or ("#" .. ex .. "/" .. len),
      c.known or "NEW", k)
  end
  return table.concat(out, "\n")
end

return report
