-- conformance/isa_int.lua - integer templates of the differential tester:
-- ALU, shifts and rotates, bit operations, multiply and divide, string
-- operations, the stack, cmov/setcc.  Format: conformance/isa.lua.  Flag
-- effects follow the SDM's "Flags Affected"; where they depend on an
-- operand (shift counts, string counts) a flags function says which.
local T = {}
local function add(t) T[#T + 1] = t end
local ALL, WIDE = { 8, 16, 32, 64 }, { 16, 32, 64 }

-- {============================================================ ALU

for _, op in ipairs { "add", "sub", "cmp", "adc", "sbb" } do
  local r = (op == "adc" or op == "sbb") and "C" or nil
  for _, f in ipairs { { "r$,r$", "%r, %r" }, { "r$,m$", "%r, %m" }, { "m$,r$", "%m, %r" },
                       { "r$,i", "%r, %i" }, { "m$,i", "%m, %i" } } do
    add { form = op .. " " .. f[1], asm = op .. " " .. f[2], sizes = ALL, r = r, w = "CPAZSO", group = "alu" }
  end
end
for _, op in ipairs { "and", "or", "xor", "test" } do
  for _, f in ipairs { { "r$,r$", "%r, %r" }, { "r$,m$", "%r, %m" }, { "m$,r$", "%m, %r" },
                       { "r$,i", "%r, %i" }, { "m$,i", "%m, %i" } } do
    if not (op == "test" and f[1] == "r$,m$") then
      add { form = op .. " " .. f[1], asm = op .. " " .. f[2], sizes = ALL, w = "CPZSO", u = "A", group = "alu" }
    end
  end
end
for _, op in ipairs { "inc", "dec" } do
  add { form = op .. " r$", asm = op .. " %r", sizes = ALL, w = "PAZSO", group = "alu" }
  add { form = op .. " m$", asm = op .. " %m", sizes = ALL, w = "PAZSO", group = "alu" }
end
add { form = "neg r$", asm = "neg %r", sizes = ALL, w = "CPAZSO", group = "alu" }
add { form = "neg m$", asm = "neg %m", sizes = ALL, w = "CPAZSO", group = "alu" }
add { form = "not r$", asm = "not %r", sizes = ALL, group = "alu" }
add { form = "not m$", asm = "not %m", sizes = ALL, group = "alu" }

-- locked read-modify-writes of memory
for _, op in ipairs { "add", "sub", "adc", "sbb" } do
  add { form = "lock " .. op .. " m$,r$", asm = "lock " .. op .. " %m, %r", sizes = ALL,
        r = (op == "adc" or op == "sbb") and "C" or nil, w = "CPAZSO", group = "alu", weight = 0.5 }
end
for _, op in ipairs { "and", "or", "xor" } do
  add { form = "lock " .. op .. " m$,r$", asm = "lock " .. op .. " %m, %r", sizes = ALL, w = "CPZSO", u = "A",
        group = "alu", weight = 0.5 }
end
add { form = "lock neg m$", asm = "lock neg %m", sizes = ALL, w = "CPAZSO", group = "alu" }
add { form = "lock not m$", asm = "lock not %m", sizes = ALL, group = "alu", weight = 0.5 }
add { form = "lock inc m$", asm = "lock inc %m", sizes = ALL, w = "PAZSO", group = "alu", weight = 0.5 }
add { form = "lock dec m$", asm = "lock dec %m", sizes = ALL, w = "PAZSO", group = "alu", weight = 0.5 }

-- moves, extensions, exchanges
add { form = "mov r$,r$", asm = "mov %r, %r", sizes = ALL, group = "alu" }
add { form = "mov r$,m$", asm = "mov %r, %m", sizes = ALL, group = "alu" }
add { form = "mov m$,r$", asm = "mov %m, %r", sizes = ALL, group = "alu" }
add { form = "mov r$,i", asm = "mov %r, %i", sizes = ALL, group = "alu" }
add { form = "mov m$,i", asm = "mov %m, %i", sizes = ALL, group = "alu" }
add { form = "mov r64,i64", asm = "mov %r64, %q", group = "alu" }
add { form = "movzx r$,r8", asm = "movzx %r, %r8", sizes = WIDE, group = "alu" }
add { form = "movzx r$,m16", asm = "movzx %r, %m16", sizes = { 32, 64 }, group = "alu" }
add { form = "movsx r$,r8", asm = "movsx %r, %r8", sizes = WIDE, group = "alu" }
add { form = "movsx r$,m16", asm = "movsx %r, %m16", sizes = { 32, 64 }, group = "alu" }
add { form = "movsxd r64,r32", asm = "movsxd %r64, %r32", group = "alu" }
add { form = "movsxd r64,m32", asm = "movsxd %r64, %m32", group = "alu" }
add { form = "xchg r$,r$", asm = "xchg %r, %r", sizes = ALL, group = "alu" }
add { form = "xchg m$,r$", asm = "xchg %m, %r", sizes = ALL, group = "alu" }
add { form = "xadd r$,r$", asm = "xadd %r, %r", sizes = ALL, w = "CPAZSO", group = "alu" }
add { form = "lock xadd m$,r$", asm = "lock xadd %m, %r", sizes = ALL, w = "CPAZSO", group = "alu" }
add { form = "cmpxchg r$,r$", asm = "cmpxchg %r, %r", sizes = ALL, w = "CPAZSO", group = "alu" }
add { form = "lock cmpxchg m$,r$", asm = "lock cmpxchg %m, %r", sizes = ALL, w = "CPAZSO", group = "alu" }
add { form = "cmpxchg8b m64", asm = "lock cmpxchg8b %m64", w = "Z", group = "alu", weight = 0.5 }
add { form = "cmpxchg16b m128", asm = "lock cmpxchg16b %m128", w = "Z", group = "alu", weight = 0.5 }
add { form = "bswap r$", asm = "bswap %r", sizes = { 32, 64 }, group = "alu" }
add { form = "lea r$,[r+r*s+d]", asm = "lea %r, [%r64 + %r64 * %sc + %d]", sizes = { 32, 64 }, group = "alu" }
for _, op in ipairs { "cbw", "cwde", "cdqe", "cwd", "cdq", "cqo" } do
  add { form = op, asm = op, group = "alu", weight = 0.3 }
end
add { form = "lahf", asm = "lahf", r = "CPAZS", group = "alu", weight = 0.5 }
add { form = "sahf", asm = "sahf", w = "CPAZS", group = "alu", weight = 0.5 }
add { form = "clc", asm = "clc", w = "C", group = "alu", weight = 0.3 }
add { form = "stc", asm = "stc", w = "C", group = "alu", weight = 0.3 }
add { form = "cmc", asm = "cmc", r = "C", w = "C", group = "alu", weight = 0.3 }
add { form = "cld", asm = "cld", w = "D", group = "alu", weight = 0.3 }
add { form = "std", asm = "std", w = "D", group = "alu", weight = 0.3 }

-- }============================================================ shifts and rotates

-- Which flags a shift or rotate by `count` defines and leaves undefined
-- (SDM: a masked count of 0 changes no flag; OF is defined for a count of 1
-- only; SHL/SHR leave CF undefined for counts of at least the operand size;
-- shifts leave AF undefined).
local function shift_flags(kind)
  return function(inst)
    local size, masked = inst.size, inst.count & (inst.size == 64 and 63 or 31)
    if masked == 0 then return "", "" end
    local w, u
    if kind == "rol" or kind == "ror" then
      w, u = "C", ""
    elseif kind == "rcl" or kind == "rcr" then
      local rot = size < 32 and masked % (size + 1) or masked
      if rot == 0 then w, u = "", "C" else w, u = "C", "" end
    else
      w, u = "PZS", "A"
      if kind ~= "sar" and masked >= size then u = u .. "C" else w = w .. "C" end
    end
    if masked == 1 then w = w .. "O" else u = u .. "O" end
    return w, u
  end
end

for _, op in ipairs { "shl", "shr", "sar", "rol", "ror", "rcl", "rcr" } do
  local r = (op == "rcl" or op == "rcr") and "C" or nil
  local fl = shift_flags(op)
  add { form = op .. " r$,1", asm = op .. " %r, 1", sizes = ALL, r = r, flags = fl, count = 1, group = "shift" }
  add { form = op .. " r$,i8", asm = op .. " %r, %c", sizes = ALL, r = r, flags = fl, group = "shift" }
  add { form = op .. " r$,cl", asm = "mov ecx, %c\n" .. op .. " %r, cl", sizes = ALL, r = r, flags = fl, group = "shift" }
  add { form = op .. " m$,i8", asm = op .. " %m, %c", sizes = ALL, r = r, flags = fl, group = "shift" }
  add { form = op .. " m$,cl", asm = "mov ecx, %c\n" .. op .. " %m, cl", sizes = ALL, r = r, flags = fl, group = "shift" }
end
-- double shifts, 32 and 64 bits (16-bit counts above 16 leave the result undefined)
for _, op in ipairs { "shld", "shrd" } do
  local fl = shift_flags("shl")
  add { form = op .. " r$,r$,i8", asm = op .. " %r, %r, %c", sizes = { 32, 64 }, flags = fl, group = "shift" }
  add { form = op .. " m$,r$,i8", asm = op .. " %m, %r, %c", sizes = { 32, 64 }, flags = fl, group = "shift" }
  add { form = op .. " r$,r$,cl", asm = "mov ecx, %c\n" .. op .. " %r, %r, cl", sizes = { 32, 64 }, flags = fl, group = "shift" }
  add { form = op .. " m$,r$,cl", asm = "mov ecx, %c\n" .. op .. " %m, %r, cl", sizes = { 32, 64 }, flags = fl, group = "shift" }
end

-- }============================================================ bit operations

for _, op in ipairs { "bt", "bts", "btr", "btc" } do
  add { form = op .. " r$,r$", asm = op .. " %r, %r", sizes = WIDE, w = "C", u = "PASO", group = "bit" }
  add { form = op .. " r$,i8", asm = op .. " %r, %u8", sizes = WIDE, w = "C", u = "PASO", group = "bit" }
  add { form = op .. " m$,i8", asm = (op == "bt" and "" or "lock ") .. op .. " %m, %u8", sizes = WIDE, w = "C", u = "PASO",
        group = "bit" }
end
-- bsf/bsr of a source made non-zero first (the destination of a zero source is undefined)
for _, op in ipairs { "bsf", "bsr" } do
  add { form = op .. " r$,r$", asm = "or %r1, %nz\n" .. op .. " %r, %r1", sizes = WIDE, w = "Z", u = "CPASO", group = "bit" }
end

-- }============================================================ multiply and divide

add { form = "mul r$", asm = "mul %r", sizes = ALL, w = "CO", u = "PAZS", group = "muldiv" }
add { form = "mul m$", asm = "mul %m", sizes = ALL, w = "CO", u = "PAZS", group = "muldiv" }
add { form = "imul r$", asm = "imul %r", sizes = ALL, w = "CO", u = "PAZS", group = "muldiv" }
add { form = "imul m$", asm = "imul %m", sizes = ALL, w = "CO", u = "PAZS", group = "muldiv" }
add { form = "imul r$,r$", asm = "imul %r, %r", sizes = WIDE, w = "CO", u = "PAZS", group = "muldiv" }
add { form = "imul r$,m$", asm = "imul %r, %m", sizes = WIDE, w = "CO", u = "PAZS", group = "muldiv" }
add { form = "imul r$,r$,i", asm = "imul %r, %r, %i", sizes = WIDE, w = "CO", u = "PAZS", group = "muldiv" }
-- division: raw (often #DE), and after the usual zero or sign extension
add { form = "div r$", asm = "div %r", sizes = ALL, u = "CPAZSO", group = "muldiv", weight = 0.5 }
add { form = "idiv r$", asm = "idiv %r", sizes = ALL, u = "CPAZSO", group = "muldiv", weight = 0.5 }
add { form = "div r$", asm = "xor edx, edx\ndiv %r", sizes = { 32, 64 }, u = "CPAZSO", group = "muldiv" }
add { form = "div m$", asm = "xor edx, edx\ndiv %m", sizes = { 16, 32, 64 }, u = "CPAZSO", group = "muldiv" }
add { form = "idiv r$", asm = "cqo\nidiv %r", sizes = { 64 }, u = "CPAZSO", group = "muldiv" }
add { form = "idiv r$", asm = "cdq\nidiv %r", sizes = { 32 }, u = "CPAZSO", group = "muldiv" }
add { form = "idiv m$", asm = "cqo\nidiv %m", sizes = { 64 }, u = "CPAZSO", group = "muldiv" }

-- }============================================================ string operations

-- rsi, rdi and rcx are set first (inside the data window, at most 16 elements).
local STRING_SETUP = "lea rsi, [r15 + %d]\nlea rdi, [r15 + %d]\nmov ecx, %n\n"
local function string_flags(w, rep)
  return function(inst)
    if rep and inst.n == 0 then return "", "" end   -- a zero count runs nothing
    return w, ""
  end
end
for _, s in ipairs {
  { "movs", "movs%s", nil }, { "stos", "stos%s", nil }, { "lods", "lods%s", nil },
  { "cmps", "cmps%s", "CPAZSO" }, { "scas", "scas%s", "CPAZSO" },
} do
  local name, mnem, w = s[1], s[2], s[3]
  add { form = name .. "$", asm = STRING_SETUP .. mnem, sizes = ALL, r = "D", flags = string_flags(w or "", false),
        group = "string" }
  local reps = w and { "repe", "repne" } or { "rep" }
  for _, rep in ipairs(reps) do
    add { form = rep .. " " .. name .. "$", asm = STRING_SETUP .. rep .. " " .. mnem, sizes = ALL, r = "D",
          flags = string_flags(w or "", true), group = "string" }
  end
end

-- }============================================================ stack

add { form = "push r64", asm = "push %r64", group = "stack" }
add { form = "push m64", asm = "push %m64", group = "stack" }
add { form = "push i32", asm = "push %i32", group = "stack" }
add { form = "pop r64", asm = "pop %r64", group = "stack" }
add { form = "pop m64", asm = "pop %m64", group = "stack" }
add { form = "push r16", asm = "push %r16", group = "stack", weight = 0.3 }
add { form = "pop r16", asm = "pop %r16", group = "stack", weight = 0.3 }
add { form = "pushfq", asm = "pushfq", r = "CPAZSOD", group = "stack" }
add { form = "popfq", asm = "push %fl\npopfq", w = "CPAZSOD", group = "stack" }

-- }============================================================ cmov / setcc

add { form = "cmovcc r$,r$", asm = "cmov%cc %r, %r", sizes = WIDE, group = "cond" }
add { form = "cmovcc r$,m$", asm = "cmov%cc %r, %m", sizes = WIDE, group = "cond" }
add { form = "setcc r8", asm = "set%cc %r8", group = "cond" }
add { form = "setcc m8", asm = "set%cc %m8", group = "cond" }

return T
