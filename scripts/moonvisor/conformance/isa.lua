-- conformance/isa.lua - the instruction table of the differential tester:
-- every template from isa_int.lua (integer) and isa_fp.lua (SSE, x87,
-- faults), with what they share: register names, condition codes and the
-- flag masks that say which flags each template reads, defines and leaves
-- undefined (Intel SDM, volume 2, each instruction's "Flags Affected").
--
-- A template:
--   form    class name, "$" is replaced by the operand size ("add r$,m$")
--   asm     nasm text, lines separated by "\n"; placeholders (conformance/gen.lua):
--           %r %m %i (operand size), %r8..%r64, %m8..%m128, %m80, %mu (a
--           misaligned 16-byte operand), %i8 %u8, %c (a shift count),
--           %x (xmm), %st (st(i)), %cc (a condition), %d (a displacement),
--           %n (a string count), %k (cmpps predicate), %fl (an rflags value)
--   sizes   operand sizes in bits (default { 64 })
--   r w u   rflags read / defined / left undefined: letters C P A Z S O D
--   flags   function(inst) -> w, u: when they depend on the instance (shifts)
--   cc      x87 condition codes C0..C3: { r = "0123", w = ..., u = ... }
--   group   for weights and the report; weight (default 1) within it
local isa = {}

isa.GPR = {
  [64] = { "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14" },
  [32] = { "eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "r8d", "r9d", "r10d", "r11d", "r12d", "r13d", "r14d" },
  [16] = { "ax", "bx", "cx", "dx", "si", "di", "bp", "r8w", "r9w", "r10w", "r11w", "r12w", "r13w", "r14w" },
  [8] = { "al", "bl", "cl", "dl", "sil", "dil", "bpl", "r8b", "r9b", "r10b", "r11b", "r12b", "r13b", "r14b" },
}
-- r15 holds the data window's base and rsp the stack: templates read them
-- through their addressing, never write them.
isa.SIZE_WORD = { [8] = "byte", [16] = "word", [32] = "dword", [64] = "qword", [80] = "tword" }
isa.ACC = { [8] = "al", [16] = "ax", [32] = "eax", [64] = "rax" }
isa.STR = { [8] = "b", [16] = "w", [32] = "d", [64] = "q" }

-- rflags bits by letter, and the x87 condition codes C0..C3 in the FSW.
isa.FLAG = { C = 0x1, P = 0x4, A = 0x10, Z = 0x40, S = 0x80, D = 0x400, O = 0x800 }
isa.STATUS = 0x8d5                       -- C P A Z S O
isa.CC = { ["0"] = 0x100, ["1"] = 0x200, ["2"] = 0x400, ["3"] = 0x4000 }
isa.ALL_CC = 0x4700

local function mask_of(spec, bits, what)
  local m = 0
  for ch in (spec or ""):gmatch(".") do
    m = m | (bits[ch] or error(("conformance.isa: unknown %s letter %q in %q"):format(what, ch, spec)))
  end
  return m
end
function isa.flags(spec) return mask_of(spec, isa.FLAG, "flag") end
function isa.ccmask(spec) return mask_of(spec, isa.CC, "x87 condition code") end

-- Conditions (jcc/setcc/cmovcc suffixes) and the flags each reads.
isa.COND = {
  { "o", "O" }, { "no", "O" }, { "b", "C" }, { "ae", "C" }, { "z", "Z" }, { "nz", "Z" },
  { "be", "CZ" }, { "a", "CZ" }, { "s", "S" }, { "ns", "S" }, { "p", "P" }, { "np", "P" },
  { "l", "SO" }, { "ge", "SO" }, { "le", "ZSO" }, { "g", "ZSO" },
}
-- fcmovcc: b e be u and their negations; each reads CF, ZF and/or PF.
isa.FCOND = { { "b", "C" }, { "e", "Z" }, { "be", "CZ" }, { "u", "P" },
              { "nb", "C" }, { "ne", "Z" }, { "nbe", "CZ" }, { "nu", "P" } }

-- Group weights: how often a generated instruction comes from each group.
isa.GROUP_WEIGHT = {
  alu = 20, shift = 8, bit = 5, muldiv = 6, string = 5, stack = 5, cond = 6,
  ["sse-int"] = 11, ["sse-fp"] = 14, x87 = 12, fault = 3, misc = 3,
}

local templates
-- Every template, checked and with its masks computed, in table order.
function isa.templates()
  if templates then return templates end
  templates = {}
  for _, part in ipairs { "moonvisor.conformance.isa_int", "moonvisor.conformance.isa_fp" } do
    for _, t in ipairs(require(part)) do
      assert(t.form and t.asm and t.group, "conformance.isa: a template needs form, asm and group: " .. tostring(t.form))
      assert(isa.GROUP_WEIGHT[t.group], "conformance.isa: unknown group " .. tostring(t.group) .. " of " .. t.form)
      t.sizes = t.sizes or { 64 }
      t.rmask, t.wmask, t.umask = isa.flags(t.r), isa.flags(t.w), isa.flags(t.u)
      local cc = t.cc or {}
      t.cc_r, t.cc_w, t.cc_u = isa.ccmask(cc.r), isa.ccmask(cc.w), isa.ccmask(cc.u)
      t.weight = t.weight or 1
      templates[#templates + 1] = t
    end
  end
  return templates
end

-- The template whose form (with "$" replaced by size) is `form`, and that size.
function isa.find(form)
  for _, t in ipairs(isa.templates()) do
    for _, size in ipairs(t.sizes) do
      if t.form:gsub("%$", tostring(size)) == form then return t, size end
    end
  end
  return nil
end

return isa
