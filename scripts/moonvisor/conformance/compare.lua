-- conformance/compare.lua - what differs between two runs of one case
-- (conformance/machine results): the exit, the general registers, rflags
-- bit by bit with the bits the SDM leaves undefined masked, the x87 and SSE
-- state (C0..C3 masked the same way; x87 registers compared where tagged
-- valid) and the data window.
--
-- compare.diff(a, b, masks) -> items, details
--   items:   a sorted list of coarse names ("exit.type", "exit.vector",
--            "exit.error_code", "exit.rip", "exit.mem", "cr2", "gpr", "rsp", "rip",
--            "CF".."OF", "DF", "RF", "AC", "rflags" (the other bits), "fcw", "fsw.flags" (exception
--            flags), "fsw.stack" (SF: stack fault), "fsw.cc", "fsw.top", "ftw", "st", "mxcsr.flags",
--            "mxcsr", "xmm", "mem"), empty when the runs agree.  Floating-point
--            values are named by how they differ: "xmm.nan" / "st.nan" (two NaNs,
--            other payloads or quietness), "xmm.denormal" (zero or denormal on both
--            sides: flush-to-zero, denormals-are-zero), "st.precision" (same sign and
--            exponent, the top 40 significand bits agree); "xmm" / "st" otherwise.
--            xmm lanes are read as floats of the width the culprit's form names
--            (masks.form: ps/ss 32 bits, pd/sd 64 bits; the destination of a cvt).
--   details: one line per difference, with both values, for verbose output
-- compare.key(form, items) -> the class key "form: item,item"
-- compare.tag(form, fpu)    -> " [pc24,rc]", " [ftz]", ...: the FP mode, appended to forms
-- compare.fp_mode(fpu, seq, i) -> { fcw, mxcsr } seq[i] runs with
local compare = {}

local GPRS = { "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13",
               "r14", "r15" }
local FLAG_NAMES = { [0x1] = "CF", [0x4] = "PF", [0x10] = "AF", [0x40] = "ZF", [0x80] = "SF", [0x400] = "DF",
                     [0x800] = "OF", [0x10000] = "RF", [0x40000] = "AC" }

local function hex(v)
  if v == nil then return "nil" end
  if type(v) ~= "number" then return tostring(v) end
  return ("0x%x"):format(v)
end
local function bytes_hex(s) return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end
local function reg_hex(s) return bytes_hex(s:reverse()) end   -- registers: most significant byte first

-- The float width (bytes) of the lanes an instruction form writes, or nil.
function compare.lane_width(form)
  if not form then return nil end
  local dst = form:match("^cvt%a*2(%a%a)") or form:match("^%a-([ps][sd])[ %d]") or form:match("^%a-([ps][sd])$")
  if dst == "ps" or dst == "ss" then return 4 end
  if dst == "pd" or dst == "sd" then return 8 end
  return nil
end

-- "nan", "denormal" or "value": how two differing float lanes differ.
local function lane_kind(a, b, width)
  local ebits, mbits = width == 4 and 8 or 11, width == 4 and 23 or 52
  local function parts(v) return (v >> mbits) & ((1 << ebits) - 1), v & ((1 << mbits) - 1) end
  local ea, ma = parts(a)
  local eb, mb = parts(b)
  local emax = (1 << ebits) - 1
  if ea == emax and ma ~= 0 and eb == emax and mb ~= 0 then return "nan" end
  if ea == 0 and eb == 0 then return "denormal" end
  return "value"
end

function compare.xmm_item(a, b, form)
  local width = compare.lane_width(form)
  if not width then return "xmm" end
  local fmt = width == 4 and "<I4" or "<i8"
  local kinds = {}
  for off = 1, 16, width do
    local x, y = string.unpack(fmt, a, off), string.unpack(fmt, b, off)
    if x ~= y then kinds[lane_kind(x, y, width)] = true end
  end
  if kinds.value then return "xmm" end
  if kinds.nan and not kinds.denormal then return "xmm.nan" end
  if kinds.denormal and not kinds.nan then return "xmm.denormal" end
  return "xmm"
end

function compare.st_item(a, b)
  local sa, ea = string.unpack("<i8I2", a)
  local sb, eb = string.unpack("<i8I2", b)
  local nan_a = ea & 0x7fff == 0x7fff and sa << 1 ~= 0
  local nan_b = eb & 0x7fff == 0x7fff and sb << 1 ~= 0
  if nan_a and nan_b then return "st.nan" end
  if ea == eb and not nan_a and not nan_b and sa >> 24 == sb >> 24 then return "st.precision" end
  return "st"
end

function compare.diff(a, b, masks)
  masks = masks or {}
  local set, details = {}, {}
  local function note(item, fmt, ...)
    set[item] = true
    details[#details + 1] = ("%-12s " .. fmt):format(item, ...)
  end
  local ea, eb = a.exit, b.exit
  if ea.type ~= eb.type then
    note("exit.type", "%s vs %s (vector %s vs %s, rip %s vs %s)", ea.type, eb.type, hex(ea.vector), hex(eb.vector),
         hex(ea.rip), hex(eb.rip))
    return { "exit.type" }, details
  end
  if ea.type == "exception" then
    if ea.vector ~= eb.vector then
      note("exit.vector", "%s vs %s (rip %s vs %s)", hex(ea.vector), hex(eb.vector), hex(ea.rip), hex(eb.rip))
      return { "exit.vector" }, details
    end
    if ea.error_code ~= eb.error_code then note("exit.error_code", "%s vs %s", hex(ea.error_code), hex(eb.error_code)) end
    if ea.rip ~= eb.rip then note("exit.rip", "%s vs %s", hex(ea.rip), hex(eb.rip)) end
    if a.cr2 ~= b.cr2 then note("cr2", "%s vs %s", hex(a.cr2), hex(b.cr2)) end
  elseif ea.type == "mem" or ea.type == "io" then
    for _, k in ipairs { "addr", "port", "size", "write" } do
      if ea[k] ~= eb[k] then note("exit.mem", "%s %s vs %s", k, hex(ea[k]), hex(eb[k])) end
    end
    if ea.write and ea.data ~= eb.data then note("exit.mem", "data %s vs %s", hex(ea.data), hex(eb.data)) end
  end
  -- registers (the exit's rip is compared above; the closing syscall's is harness business)
  local ra, rb = a.regs, b.regs
  for _, r in ipairs(GPRS) do
    if ra[r] ~= rb[r] then note(r == "rsp" and "rsp" or "gpr", "%s %s vs %s", r, hex(ra[r]), hex(rb[r])) end
  end
  if ea.type ~= "syscall" and ea.type ~= "exception" and ra.rip ~= rb.rip then
    note("rip", "%s vs %s", hex(ra.rip), hex(rb.rip))
  end
  local fd = (ra.rflags ~ rb.rflags) & ~(masks.rflags or 0)
  for bit, name in pairs(FLAG_NAMES) do
    if fd & bit ~= 0 then note(name, "rflags %s vs %s", hex(ra.rflags), hex(rb.rflags)) end
  end
  if fd & ~0x50cd5 ~= 0 then note("rflags", "%s vs %s", hex(ra.rflags), hex(rb.rflags)) end
  -- x87 and SSE
  local fa, fb = a.fpu, b.fpu
  if fa.fcw ~= fb.fcw then note("fcw", "%s vs %s", hex(fa.fcw), hex(fb.fcw)) end
  local sd = (fa.fsw ~ fb.fsw) & ~(masks.cc or 0)
  if sd & 0x80bf ~= 0 then note("fsw.flags", "%s vs %s", hex(fa.fsw), hex(fb.fsw)) end
  if sd & 0x40 ~= 0 then note("fsw.stack", "%s vs %s", hex(fa.fsw), hex(fb.fsw)) end
  if sd & 0x4700 ~= 0 then note("fsw.cc", "%s vs %s", hex(fa.fsw), hex(fb.fsw)) end
  if sd & 0x3800 ~= 0 then note("fsw.top", "%s vs %s", hex(fa.fsw), hex(fb.fsw)) end
  if fa.ftw ~= fb.ftw then note("ftw", "%s vs %s", hex(fa.ftw), hex(fb.ftw)) end
  local top = (fa.fsw >> 11) & 7
  for i = 1, 8 do
    local phys = (top + i - 1) & 7
    if fa.ftw >> phys & 1 == 1 and fa.st[i] ~= fb.st[i] then
      note(compare.st_item(fa.st[i], fb.st[i]), "st%d %s vs %s", i - 1, reg_hex(fa.st[i]), reg_hex(fb.st[i]))
    end
  end
  local md = fa.mxcsr ~ fb.mxcsr
  if md & 0x3f ~= 0 then note("mxcsr.flags", "%s vs %s", hex(fa.mxcsr), hex(fb.mxcsr)) end
  if md & ~0x3f ~= 0 then note("mxcsr", "%s vs %s", hex(fa.mxcsr), hex(fb.mxcsr)) end
  for i = 1, 16 do
    if fa.xmm[i] ~= fb.xmm[i] then
      note(compare.xmm_item(fa.xmm[i], fb.xmm[i], masks.form), "xmm%d %s vs %s", i - 1, reg_hex(fa.xmm[i]),
           reg_hex(fb.xmm[i]))
    end
  end
  if a.mem ~= b.mem then
    local state = require "moonvisor.conformance.state"
    local shown = 0
    for off = 1, #a.mem, 8 do
      local x, y = a.mem:sub(off, off + 7), b.mem:sub(off, off + 7)
      if x ~= y and shown < 4 then
        note("mem", "[0x%x] %s vs %s", state.WINDOW + off - 1, bytes_hex(x), bytes_hex(y))
        shown = shown + 1
      end
    end
  end
  local items = {}
  for k in pairs(set) do items[#items + 1] = k end
  table.sort(items)
  return items, details
end

function compare.key(form, items)
  return form .. ": " .. table.concat(items, ",")
end

-- True for the SSE forms that compute (and read MXCSR's modes): arithmetic,
-- comparisons, conversions, approximations; not moves and logic.
local SSE_ARITH = { "add", "sub", "mul", "div", "min", "max", "sqrt", "cmp", "comis", "ucomis", "cvt", "rcp", "rsqrt" }
function compare.sse_arith(form)
  local mnem = form:match("^(%a+)")
  if not mnem or not (compare.lane_width(form) or mnem:match("^cvt") or mnem:match("comis[sd]$")) then return false end
  for _, p in ipairs(SSE_ARITH) do
    if mnem:sub(1, #p) == p then return true end
  end
  return false
end

-- The mode an x87 or SSE floating-point form ran in, when not the default,
-- as a suffix of its class form: x87 precision control ("pc24", "pc53")
-- and rounding ("rc"); for SSE arithmetic, flush-to-zero and
-- denormals-are-zero ("ftz", "daz").  `fpu`'s FCW and MXCSR: those the
-- form ran with (compare.fp_mode).  Returns "" or " [tags]".
function compare.tag(form, fpu)
  local tags = {}
  if form:match("^f") then
    local pc, rc = (fpu.fcw >> 8) & 3, (fpu.fcw >> 10) & 3
    if pc == 0 then tags[#tags + 1] = "pc24" elseif pc == 2 then tags[#tags + 1] = "pc53" end
    if rc ~= 0 then tags[#tags + 1] = "rc" end
  elseif compare.sse_arith(form) then
    if fpu.mxcsr & 0x8000 ~= 0 then tags[#tags + 1] = "ftz" end
    if fpu.mxcsr & 0x40 ~= 0 then tags[#tags + 1] = "daz" end
  end
  return #tags > 0 and (" [" .. table.concat(tags, ",") .. "]") or ""
end

-- The FCW and MXCSR seq[upto] runs with: fpu's (the case's initial
-- state), then what each fldcw and ldmxcsr before it loads (the generator
-- writes the value into memory in the instruction's own text).
function compare.fp_mode(fpu, seq, upto)
  local mode = { fcw = fpu.fcw, mxcsr = fpu.mxcsr }
  for i = 1, upto - 1 do
    local inst = seq[i]
    local v = (inst.form == "ldmxcsr m32" or inst.form == "fldcw m16") and tonumber(inst.text:match(",%s*(0x%x+)"))
    if v and inst.form == "ldmxcsr m32" then mode.mxcsr = v elseif v then mode.fcw = v end
  end
  return mode
end

return compare
