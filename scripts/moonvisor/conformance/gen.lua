-- conformance/gen.lua - random cases: an initial state (conformance/state)
-- and 1-20 instructions instantiated from the templates of
-- conformance/isa, each case drawn from its own rng (seed, index), so a
-- case is the same whatever else the run did.
--
-- Flags: the generator tracks which rflags bits (and x87 C0..C3) are
-- undefined after each instruction and never picks an instruction that reads
-- one (adc after mul, setcc after div, pushfq, fnstsw ...): what is left
-- undefined at the end is masked by the comparison, not read into registers.
-- gen.valid() checks the same rule for the subsequences the minimiser tries.
local fuzz = require "moonvisor.fuzz"
local isa = require "moonvisor.conformance.isa"
local state = require "moonvisor.conformance.state"

local gen = {}

gen.MAX_LEN = 20

local function pick(rng, list) return list[rng:below(#list) + 1] end

-- Picks a template: a group by isa.GROUP_WEIGHT, then one by weight within
-- it (cumulative weights, searched by bisection: this runs for every
-- instruction of every case).
local groups                      -- { names, cum, [name] = { templates, cum } }
local function cumulative(items, weight_of)
  local cum, total = {}, 0
  for i, it in ipairs(items) do
    total = total + weight_of(it)
    cum[i] = total
  end
  return cum
end

local function bisect(rng, items, cum)
  local x = rng:below(1 << 30) / (1 << 30) * cum[#cum]
  local lo, hi = 1, #cum
  while lo < hi do
    local mid = (lo + hi) // 2
    if x < cum[mid] then hi = mid else lo = mid + 1 end
  end
  return items[lo]
end

function gen.pick_template(rng)
  if not groups then
    groups = { names = {} }
    for _, t in ipairs(isa.templates()) do
      if not groups[t.group] then
        groups[t.group] = { templates = {} }
        groups.names[#groups.names + 1] = t.group
      end
      table.insert(groups[t.group].templates, t)
    end
    table.sort(groups.names)
    groups.cum = cumulative(groups.names, function(n) return isa.GROUP_WEIGHT[n] end)
    for _, n in ipairs(groups.names) do
      groups[n].cum = cumulative(groups[n].templates, function(t) return t.weight end)
    end
  end
  local g = groups[bisect(rng, groups.names, groups.cum)]
  return bisect(rng, g.templates, g.cum)
end

-- {============================================================ operands

local function signed(v, bits)
  v = v & ((1 << bits) - 1)
  if v >= 1 << (bits - 1) then v = v - (1 << bits) end
  return v
end

local function imm(rng, size)
  local v = state.int(rng)
  if size == 8 then return tostring(signed(v, 8)) end
  if size == 16 then return ("0x%x"):format(v & 0xffff) end
  if size == 32 then return ("0x%x"):format(v & 0xffffffff) end
  return tostring(signed(v, 32))          -- 64-bit operations sign-extend an imm32
end

local COUNTS = { 0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65 }

-- A memory operand [r15 + d] of `bytes` bytes: aligned to its size (up to
-- 16) three times in four, or always (align = true), or never (align = false).
local function mem(rng, bytes, align)
  local a = math.min(bytes, 16)
  local d = rng:below(0x800 - 16) - 0x400
  if align == true or (align == nil and not rng:chance(4)) then d = d - d % a
  elseif align == false then d = d - d % 16 + 1 + rng:below(15) end
  return ("[r15 %s 0x%x]"):format(d < 0 and "-" or "+", math.abs(d))
end

local function sized_mem(rng, bits, align)
  local word = isa.SIZE_WORD[bits]
  return (word and word .. " " or "") .. mem(rng, bits // 8, align)
end

-- Placeholder -> function(rng, inst) returning the text.
local P = {}
P.r = function(rng, inst) return pick(rng, isa.GPR[inst.size]) end
for _, b in ipairs { 8, 16, 32, 64 } do
  P["r" .. b] = function(rng) return pick(rng, isa.GPR[b]) end
  P["m" .. b] = function(rng) return sized_mem(rng, b) end
  P["i" .. b] = function(rng) return imm(rng, b) end
end
P.m = function(rng, inst) return sized_mem(rng, inst.size) end
P.i = function(rng, inst) return imm(rng, inst.size) end
P.m128 = function(rng) return mem(rng, 16, true) end
P.mu = function(rng) return mem(rng, 16, false) end
P.m80 = function(rng) return "tword " .. mem(rng, 16, rng:chance(8) and false or true) end
P.u8 = function(rng) return tostring(rng:below(256)) end
P.q = function(rng) return ("0x%x"):format(state.int(rng)) end
P.x = function(rng) return "xmm" .. rng:below(16) end
P.st = function(rng) return "st" .. rng:below(8) end
P.sc = function(rng) return tostring(1 << rng:below(4)) end
P.d = function(rng) return tostring(rng:below(0x600) - 0x300) end
P.k = function(rng) return tostring(rng:below(8)) end
P.s = function(_, inst) return isa.STR[inst.size] end
P.c = function(rng, inst)
  inst.count = rng:chance(3) and rng:below(256) or pick(rng, COUNTS)
  return tostring(inst.count)
end
P.n = function(rng, inst)
  inst.n = rng:chance(10) and 0 or 1 + rng:below(16)
  return tostring(inst.n)
end
P.nz = function(rng, inst) return ("0x%x"):format(1 << rng:below(inst.size == 16 and 16 or 31)) end
P.cc = function(rng, inst)
  local c = pick(rng, isa.COND)
  inst.reads = inst.reads | isa.flags(c[2])
  return c[1]
end
P.fcc = function(rng, inst)
  local c = pick(rng, isa.FCOND)
  inst.reads = inst.reads | isa.flags(c[2])
  return c[1]
end
P.fl = function(rng)     -- an rflags value for popfq: status flags, DF, sometimes AC; IF on, TF off
  local v = state.RFLAGS_FIXED
  for _, bit in ipairs { 0x1, 0x4, 0x10, 0x40, 0x80, 0x800, 0x400 } do
    if rng:chance(2) then v = v | bit end
  end
  if rng:chance(8) then v = v | 0x40000 end
  return ("0x%x"):format(v)
end
P.mx = function(rng) return ("0x%x"):format(state.mxcsr(rng, true)) end
P.cw = function(rng) return ("0x%x"):format(state.fcw(rng)) end
P.leaf = function(rng) return ("0x%x"):format(pick(rng, { 0, 1, 7, 0xd, 0x80000000, 0x80000001, 0x80000008 })) end
gen.PLACEHOLDERS = P

-- Fills the placeholders of template t for operand size `size`.  Names
-- ending in "1" or "a" (%r1, %m32a) stand for one operand used twice.
function gen.instantiate(rng, t, size)
  local inst = { t = t, size = size, form = t.form:gsub("%$", tostring(size)), count = t.count,
                 reads = t.rmask }
  local memo = {}
  inst.text = t.asm:gsub("%%(%a[%w]*)", function(name)
    if P[name] then return P[name](rng, inst) end
    local base = name:match("^(.-)[1a]$")
    if not (base and P[base]) then error(("conformance.gen: template %q: unknown placeholder %%%s"):format(t.form, name)) end
    memo[name] = memo[name] or P[base](rng, inst)
    return memo[name]
  end)
  gen.effects(inst)
  return inst
end

-- Sets inst.w / inst.u (flags defined / left undefined) and the x87 masks.
function gen.effects(inst)
  local t = inst.t
  if t.flags then
    local w, u = t.flags(inst)
    inst.w, inst.u = isa.flags(w), isa.flags(u)
  else
    inst.w, inst.u = t.wmask, t.umask
  end
  inst.cc_r, inst.cc_w, inst.cc_u = t.cc_r, t.cc_w, t.cc_u
  return inst
end

-- }============================================================ sequences

-- Undefined rflags and C0..C3 after seq[1..upto] (all of it by default).
function gen.undefined(seq, upto)
  local u, cu = 0, 0
  for i = 1, upto or #seq do
    local inst = seq[i]
    u = (u & ~inst.w) | inst.u
    cu = (cu & ~inst.cc_w) | inst.cc_u
  end
  return u, cu
end

-- True when no instruction of seq reads a flag an earlier one left undefined.
function gen.valid(seq)
  local u, cu = 0, 0
  for _, inst in ipairs(seq) do
    if inst.reads & u ~= 0 or inst.cc_r & cu ~= 0 then return false end
    u = (u & ~inst.w) | inst.u
    cu = (cu & ~inst.cc_w) | inst.cc_u
  end
  return true
end

-- The rng of case `index` of a run with `seed`.
function gen.rng(seed, index)
  return fuzz.rng(fuzz.splitmix(seed) + index)
end

-- Case `index` of a run: { seed, index, init = state, seq = { inst... } }.
-- `only` (a Lua pattern) restricts the templates to forms it matches.
function gen.case(seed, index, only)
  local rng = gen.rng(seed, index)
  local init = state.random(rng)
  local len = 1 + rng:below(gen.MAX_LEN)
  local seq, u, cu = {}, 0, 0
  for i = 1, len do
    local inst
    for _ = 1, 50 do
      local t = gen.pick_template(rng)
      local cand = gen.instantiate(rng, t, pick(rng, t.sizes))
      if (not only or cand.form:find(only)) and cand.reads & u == 0 and cand.cc_r & cu == 0 then
        inst = cand
        break
      end
    end
    if inst then
      seq[#seq + 1] = inst
      u = (u & ~inst.w) | inst.u
      cu = (cu & ~inst.cc_w) | inst.cc_u
    end
  end
  return { seed = seed, index = index, init = init, seq = seq }
end

-- An instance from hand-written text (reproducers): form names the class;
-- undefined = flags (letters) to treat as left undefined, cc likewise.
function gen.literal(text, form, undefined, cc)
  local t = { form = form or text, asm = text, group = "misc", rmask = 0, wmask = 0,
              umask = isa.flags(undefined), cc_r = 0, cc_w = 0, cc_u = isa.ccmask(cc) }
  return gen.effects { t = t, form = t.form, text = text, reads = 0 }
end

return gen
