-- conformance/state.lua - the memory layout of a conformance case and its
-- random initial state: general registers, rflags, x87 and SSE registers,
-- FCW/MXCSR and an 8 KiB data window, drawn from a moonvisor.fuzz rng with
-- a bias towards boundary integers and special floating-point values
-- (zeros, infinities, NaNs, denormals).
--
--   0x100000  code (the case, then the closing epilogue)
--   0x300000  data window, one 4 KiB page, compared after the run; r15 =
--             0x300600 is the base of every memory operand ([r15 - 0x400 ..
--             r15 + 0x400)) and of the string operations' rsi and rdi
--   0x300d00  save slots the epilogue fills: rcx, r11, rflags
--   0x300f00  initial rsp (20 pushes or pops stay inside the window)
local state = {}

state.RAM = 0x400000
state.CODE = 0x100000
state.WINDOW, state.WINDOW_SIZE = 0x300000, 0x1000
state.R15 = 0x300600
state.SAVE = 0x300d00               -- rcx, r11, rflags: 24 bytes
state.STACK = 0x300f00
state.RFLAGS_FIXED = 0x202          -- bit 1 and IF

state.GPRS = { "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
               "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15" }

local INT = { 0, 1, 2, 3, -1, -2, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff,
              0x80000000, 0xffffffff, 0x100000000, math.maxinteger, math.mininteger, 0x8000000000000001 }
local F32 = { 0x00000000, 0x80000000, 0x3f800000, 0xbf800000, 0x7f800000, 0xff800000, 0x7fc00000,
              0x7fa00000, 0xffc00000, 0x00000001, 0x007fffff, 0x00800000, 0x7f7fffff, 0x4b000000,
              0x3eaaaaab, 0x4f000000, 0xcf000000, 0x3f000000 }
local F64 = { 0x0000000000000000, 0x8000000000000000, 0x3ff0000000000000, 0xbff0000000000000,
              0x7ff0000000000000, 0xfff0000000000000, 0x7ff8000000000000, 0x7ff4000000000000,
              0xfff8000000000000, 0x0000000000000001, 0x000fffffffffffff, 0x0010000000000000,
              0x7fefffffffffffff, 0x4330000000000000, 0x3fd5555555555555, 0x43e0000000000000,
              0xc1e0000000000000, 0x3fe0000000000000, 0x41dfffffffc00000 }
-- 80-bit values as { sign|exponent, significand }
local F80 = { { 0, 0 }, { 0x8000, 0 }, { 0x3fff, 0x8000000000000000 }, { 0xbfff, 0x8000000000000000 },
              { 0x7fff, 0x8000000000000000 }, { 0xffff, 0x8000000000000000 }, { 0x7fff, 0xc000000000000000 },
              { 0x7fff, 0xa000000000000000 }, { 0xffff, 0xc000000000000000 }, { 0, 1 },
              { 0x7ffe, -1 }, { 0x0001, 0x8000000000000000 }, { 0x400d, 0xc0e4000000000000 },
              { 0x4000, 0xc90fdaa22168c235 }, { 0x3ffd, 0xaaaaaaaaaaaaaaab }, { 0x403e, 0x8000000000000000 } }
state.INT, state.F32, state.F64, state.F80 = INT, F32, F64, F80

local function pick(rng, list) return list[rng:below(#list) + 1] end

-- A 64-bit integer, often a boundary value or a narrow one.
function state.int(rng)
  local k = rng:below(8)
  if k < 3 then return pick(rng, INT)
  elseif k == 3 then return rng:next() & 0xff
  elseif k == 4 then return rng:next() & 0xffff
  elseif k == 5 then return rng:next() & 0xffffffff
  else return rng:next() end
end

function state.f32(rng) return rng:chance(3) and (rng:next() & 0xffffffff) or pick(rng, F32) end
function state.f64(rng) return rng:chance(3) and rng:next() or pick(rng, F64) end

-- A 10-byte x87 register value: specials, normals near 1, integers, and
-- rarely an unnormal or a pseudo-denormal (unsupported or odd encodings).
function state.f80(rng)
  local k, se, sig = rng:below(10)
  if k < 4 then se, sig = table.unpack(pick(rng, F80))
  elseif k < 8 then se, sig = 0x3fff - 40 + rng:below(80) | (rng:below(2) << 15), rng:next() | math.mininteger
  elseif k == 8 then se, sig = 0x401e, (rng:next() & 0xffffffff | 0x80000000) << 32
  else se, sig = rng:chance(2) and 0 or 0x3fff, rng:next() & ~math.mininteger
    if se == 0 then sig = sig | math.mininteger end        -- pseudo-denormal; else an unnormal
  end
  return string.pack("<i8I2", sig, se)
end

-- 16 bytes of an xmm register or a memory line: integer or float lanes.
function state.vector(rng)
  local k = rng:below(4)
  if k == 0 then return string.pack("<i8i8", rng:next(), rng:next())
  elseif k == 1 then return string.pack("<i8i8", state.int(rng), state.int(rng))
  elseif k == 2 then return string.pack("<i8i8", state.f64(rng), state.f64(rng))
  else return string.pack("<I4I4I4I4", state.f32(rng), state.f32(rng), state.f32(rng), state.f32(rng)) end
end

-- The data window: 16-byte lines of random words, boundary integers,
-- doubles, floats, and (one line in four) an x87 value.  Drawn for every
-- case, so made fast: the words come from a local xorshift64 seeded by one
-- draw of rng, and are packed 64 at a time.
local PACK64 = "<" .. ("i8"):rep(64)
function state.window(rng)
  local x = rng:next() | 1
  local function next()
    x = x ~ (x << 13)
    x = x ~ (x >> 7)
    x = x ~ (x << 17)
    return x
  end
  local w, n = {}, 0
  local nI, n64, n32, n80 = #INT, #F64, #F32, #F80
  for _ = 1, state.WINDOW_SIZE // 16 do
    local r = next()
    local k = r & 7
    local a, b
    if k <= 1 then a, b = next(), r
    elseif k == 2 then a, b = INT[(r >> 8) % nI + 1], INT[(r >> 16) % nI + 1]
    elseif k == 3 then a, b = F64[(r >> 8) % n64 + 1], F64[(r >> 16) % n64 + 1]
    elseif k == 4 then
      a = F32[(r >> 8) % n32 + 1] | (F32[(r >> 16) % n32 + 1] << 32)
      b = F32[(r >> 24) % n32 + 1] | (F32[(r >> 32) % n32 + 1] << 32)
    elseif k == 5 then a, b = next(), F64[(r >> 8) % n64 + 1]
    else
      local v = F80[(r >> 8) % n80 + 1]
      if k == 7 then v = { 0x3fff - 40 + (r >> 8) % 80 | ((r >> 20) & 1) << 15, next() | math.mininteger } end
      a, b = v[2], v[1] | ((r >> 24) << 16)
    end
    w[n + 1], w[n + 2], n = a, b, n + 2
  end
  local parts = {}
  for i = 1, n, 64 do parts[#parts + 1] = string.pack(PACK64, table.unpack(w, i, i + 63)) end
  return table.concat(parts)
end

function state.fcw(rng)        -- exceptions masked; precision and rounding vary
  if rng:chance(2) then return 0x37f end
  local pc = ({ 0, 2, 3, 3 })[rng:below(4) + 1]
  return 0x7f | 0x40 | (pc << 8) | (rng:below(4) << 10)
end

function state.mxcsr(rng, flags)   -- exceptions masked; rounding, FTZ, DAZ vary
  if rng:chance(2) and not flags then return 0x1f80 end
  local v = 0x1f80 | (rng:below(4) << 13)
  if rng:chance(3) then v = v | 0x8000 end
  if rng:chance(3) then v = v | 0x40 end
  if flags then v = v | rng:below(64) end
  return v
end

-- An x87 stack of 0..8 values from a random TOP: fsw (TOP only), ftw
-- (abridged, by physical register) and st (by stack position).
function state.x87(rng)
  local top, n = rng:below(8), rng:below(9)
  local st, ftw = {}, 0
  for i = 0, 7 do
    st[i + 1] = i < n and state.f80(rng) or string.rep("\0", 10)
    if i < n then ftw = ftw | (1 << ((top + i) & 7)) end
  end
  return top << 11, ftw, st
end

-- The whole initial state of a case.
function state.random(rng)
  local regs = {}
  for _, r in ipairs(state.GPRS) do regs[r] = state.int(rng) end
  regs.r15, regs.rsp = state.R15, state.STACK
  local flags = state.RFLAGS_FIXED
  for _, bit in ipairs { 0x1, 0x4, 0x10, 0x40, 0x80, 0x800 } do
    if rng:chance(2) then flags = flags | bit end
  end
  if rng:chance(8) then flags = flags | 0x400 end   -- DF
  regs.rflags = flags
  local fsw, ftw, st = state.x87(rng)
  local xmm = {}
  for i = 1, 16 do xmm[i] = state.vector(rng) end
  return { regs = regs, fpu = { fcw = state.fcw(rng), fsw = fsw, ftw = ftw, mxcsr = state.mxcsr(rng), st = st, xmm = xmm },
           mem = state.window(rng) }
end

-- A quiet state for hand-written reproducers: zeros, an empty x87 stack,
-- the reset FCW and MXCSR; `over` replaces parts ({ regs = { rax = 1 },
-- fpu = { mxcsr = ... }, xmm = { [1] = bytes }, st = { ... }, mem = { [offset from r15] = bytes } }).
function state.quiet(over)
  over = over or {}
  local regs = {}
  for _, r in ipairs(state.GPRS) do regs[r] = 0 end
  regs.r15, regs.rsp, regs.rflags = state.R15, state.STACK, state.RFLAGS_FIXED
  for k, v in pairs(over.regs or {}) do regs[k] = v end
  local st, xmm = {}, {}
  for i = 1, 8 do st[i] = (over.st or {})[i] or string.rep("\0", 10) end
  for i = 1, 16 do xmm[i] = (over.xmm or {})[i] or string.rep("\0", 16) end
  local fpu = { fcw = 0x37f, fsw = 0, ftw = 0, mxcsr = 0x1f80, st = st, xmm = xmm }
  for k, v in pairs(over.fpu or {}) do fpu[k] = v end
  local mem = string.rep("\0", state.WINDOW_SIZE)
  local edits = {}
  for off in pairs(over.mem or {}) do edits[#edits + 1] = off end
  table.sort(edits)
  for _, off in ipairs(edits) do
    local at = state.R15 - state.WINDOW + off
    local bytes = over.mem[off]
    assert(at >= 0 and at + #bytes <= state.WINDOW_SIZE, "conformance.state.quiet: mem offset out of the window: " .. off)
    mem = mem:sub(1, at) .. bytes .. mem:sub(at + #bytes + 1)
  end
  return { regs = regs, fpu = fpu, mem = mem }
end

return state
