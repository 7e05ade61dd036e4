-- conformance/isa_fp.lua - SSE/SSE2 (integer and floating point), x87,
-- and the templates meant to fault or to reach the host: privileged
-- instructions at CPL3, page faults, misaligned SSE operands, MMIO, CPUID.
-- Format: conformance/isa.lua.  SSE memory operands are 16-byte aligned
-- (%m128) unless a template asks for a misaligned one (%mu).
local T = {}
local function add(t) T[#T + 1] = t end

-- {============================================================ SSE2 integer

for _, op in ipairs {
  "paddb", "paddw", "paddd", "paddq", "psubb", "psubw", "psubd", "psubq", "paddsb", "paddsw", "paddusb",
  "paddusw", "psubsb", "psubsw", "psubusb", "psubusw", "pmullw", "pmulhw", "pmulhuw", "pmuludq", "pmaddwd",
  "pand", "pandn", "por", "pxor", "pcmpeqb", "pcmpeqw", "pcmpeqd", "pcmpgtb", "pcmpgtw", "pcmpgtd",
  "punpcklbw", "punpcklwd", "punpckldq", "punpcklqdq", "punpckhbw", "punpckhwd", "punpckhdq", "punpckhqdq",
  "packsswb", "packssdw", "packuswb", "pavgb", "pavgw", "pmaxub", "pminub", "pmaxsw", "pminsw", "psadbw",
  "psllw", "pslld", "psllq", "psrlw", "psrld", "psrlq", "psraw", "psrad",
} do
  add { form = op .. " x,x", asm = op .. " %x, %x", group = "sse-int" }
  add { form = op .. " x,m128", asm = op .. " %x, %m128", group = "sse-int", weight = 0.5 }
end
for _, op in ipairs { "psllw", "pslld", "psllq", "psrlw", "psrld", "psrlq", "psraw", "psrad", "pslldq", "psrldq" } do
  add { form = op .. " x,i8", asm = op .. " %x, %c", group = "sse-int" }
end
for _, op in ipairs { "pshufd", "pshuflw", "pshufhw" } do
  add { form = op .. " x,x,i8", asm = op .. " %x, %x, %u8", group = "sse-int" }
  add { form = op .. " x,m128,i8", asm = op .. " %x, %m128, %u8", group = "sse-int", weight = 0.5 }
end
for _, f in ipairs {
  { "movdqa x,x", "movdqa %x, %x" }, { "movdqa x,m128", "movdqa %x, %m128" }, { "movdqa m128,x", "movdqa %m128, %x" },
  { "movdqu x,m128", "movdqu %x, %mu" }, { "movdqu m128,x", "movdqu %mu, %x" },
  { "movd x,r32", "movd %x, %r32" }, { "movd r32,x", "movd %r32, %x" }, { "movd x,m32", "movd %x, %m32" },
  { "movd m32,x", "movd %m32, %x" }, { "movq x,r64", "movq %x, %r64" }, { "movq r64,x", "movq %r64, %x" },
  { "movq x,m64", "movq %x, %m64" }, { "movq m64,x", "movq %m64, %x" }, { "movq x,x", "movq %x, %x" },
  { "pmovmskb r32,x", "pmovmskb %r32, %x" }, { "pextrw r32,x,i8", "pextrw %r32, %x, %u8" },
  { "pinsrw x,r32,i8", "pinsrw %x, %r32, %u8" }, { "movntdq m128,x", "movntdq %m128, %x" },
} do
  add { form = f[1], asm = f[2], group = "sse-int" }
end

-- }============================================================ SSE/SSE2 floating point

local SCALAR_MEM = { ss = "%m32", sd = "%m64" }
for _, op in ipairs { "add", "sub", "mul", "div", "min", "max", "sqrt" } do
  for _, s in ipairs { "ps", "pd", "ss", "sd" } do
    local mem = SCALAR_MEM[s] or "%m128"
    add { form = op .. s .. " x,x", asm = op .. s .. " %x, %x", group = "sse-fp", weight = 1.5 }
    add { form = op .. s .. " x,m", asm = op .. s .. " %x, " .. mem, group = "sse-fp", weight = 0.5 }
  end
end
for _, s in ipairs { "ps", "pd", "ss", "sd" } do
  add { form = "cmp" .. s .. " x,x,i8", asm = "cmp" .. s .. " %x, %x, %k", group = "sse-fp" }
end
for _, op in ipairs { "andps", "andnps", "orps", "xorps", "andpd", "andnpd", "orpd", "xorpd",
                      "unpcklps", "unpckhps", "unpcklpd", "unpckhpd", "movhlps", "movlhps",
                      "rcpps", "rcpss", "rsqrtps", "rsqrtss",
                      "cvtps2pd", "cvtpd2ps", "cvtdq2ps", "cvtps2dq", "cvttps2dq", "cvtdq2pd", "cvtpd2dq",
                      "cvttpd2dq", "cvtss2sd", "cvtsd2ss" } do
  add { form = op .. " x,x", asm = op .. " %x, %x", group = "sse-fp" }
end
for _, op in ipairs { "comiss", "ucomiss", "comisd", "ucomisd" } do
  add { form = op .. " x,x", asm = op .. " %x, %x", w = "CPAZSO", group = "sse-fp" }
  add { form = op .. " x,m", asm = op .. " %x, " .. (op:sub(-2) == "ss" and "%m32" or "%m64"), w = "CPAZSO",
        group = "sse-fp", weight = 0.5 }
end
for _, s in ipairs { "ss", "sd" } do
  add { form = "cvtsi2" .. s .. " x,r$", asm = "cvtsi2" .. s .. " %x, %r", sizes = { 32, 64 }, group = "sse-fp" }
  add { form = "cvt" .. s .. "2si r$,x", asm = "cvt" .. s .. "2si %r, %x", sizes = { 32, 64 }, group = "sse-fp" }
  add { form = "cvtt" .. s .. "2si r$,x", asm = "cvtt" .. s .. "2si %r, %x", sizes = { 32, 64 }, group = "sse-fp" }
end
add { form = "shufps x,x,i8", asm = "shufps %x, %x, %u8", group = "sse-fp" }
add { form = "shufpd x,x,i8", asm = "shufpd %x, %x, %u8", group = "sse-fp" }
for _, f in ipairs {
  { "movss x,x", "movss %x, %x" }, { "movss x,m32", "movss %x, %m32" }, { "movss m32,x", "movss %m32, %x" },
  { "movsd x,x", "movsd %x, %x" }, { "movsd x,m64", "movsd %x, %m64" }, { "movsd m64,x", "movsd %m64, %x" },
  { "movaps x,x", "movaps %x, %x" }, { "movaps x,m128", "movaps %x, %m128" }, { "movapd m128,x", "movapd %m128, %x" },
  { "movups x,m128", "movups %x, %mu" }, { "movupd m128,x", "movupd %mu, %x" },
  { "movlps x,m64", "movlps %x, %m64" }, { "movhps x,m64", "movhps %x, %m64" },
  { "movlpd m64,x", "movlpd %m64, %x" }, { "movhpd m64,x", "movhpd %m64, %x" },
  { "movmskps r32,x", "movmskps %r32, %x" }, { "movmskpd r32,x", "movmskpd %r32, %x" },
  { "stmxcsr m32", "stmxcsr %m32" },
} do
  add { form = f[1], asm = f[2], group = "sse-fp" }
end
-- a new MXCSR: exceptions stay masked; rounding, FTZ, DAZ and the flags vary
add { form = "ldmxcsr m32", asm = "mov dword %m32a, %mx\nldmxcsr %m32a", group = "sse-fp" }

-- }============================================================ x87

-- C0..C3 (SDM "FPU Flags Affected"): arithmetic defines C1 only; the
-- comparisons, FTST, FXAM and FPREM define all four.
local ARITH = { w = "1", u = "023" }
local COMPARE = { w = "0123" }
local function x87(t)
  t.group, t.cc = "x87", t.cc or ARITH
  add(t)
end
x87 { form = "fld st", asm = "fld %st" }
x87 { form = "fld m32", asm = "fld %m32" }
x87 { form = "fld m64", asm = "fld %m64" }
x87 { form = "fld m80", asm = "fld %m80" }
x87 { form = "fild m16", asm = "fild %m16" }
x87 { form = "fild m32", asm = "fild %m32" }
x87 { form = "fild m64", asm = "fild %m64" }
for _, c in ipairs { "fld1", "fldz", "fldpi", "fldl2e", "fldl2t", "fldlg2", "fldln2" } do
  x87 { form = c, asm = c, weight = 0.5 }
end
x87 { form = "fst m32", asm = "fst %m32" }
x87 { form = "fstp m64", asm = "fstp %m64" }
x87 { form = "fstp m80", asm = "fstp %m80" }
x87 { form = "fst st", asm = "fst %st" }
x87 { form = "fstp st", asm = "fstp %st" }
x87 { form = "fistp m16", asm = "fistp %m16" }
x87 { form = "fist m32", asm = "fist %m32" }
x87 { form = "fistp m64", asm = "fistp %m64" }
x87 { form = "fisttp m32", asm = "fisttp %m32" }
for _, op in ipairs { "fadd", "fsub", "fsubr", "fmul", "fdiv", "fdivr" } do
  x87 { form = op .. " st0,st", asm = op .. " st0, %st" }
  x87 { form = op .. " st,st0", asm = op .. " %st, st0" }
  x87 { form = op .. "p st,st0", asm = op .. "p %st, st0" }
  x87 { form = op .. " m32", asm = op .. " %m32", weight = 0.5 }
  x87 { form = op .. " m64", asm = op .. " %m64", weight = 0.5 }
  x87 { form = "fi" .. op:sub(2) .. " m32", asm = "fi" .. op:sub(2) .. " %m32", weight = 0.3 }
end
for _, op in ipairs { "fchs", "fabs", "fsqrt", "frndint", "fscale", "fxtract", "f2xm1", "fyl2x", "fyl2xp1",
                      "fpatan", "fincstp", "fdecstp" } do
  x87 { form = op, asm = op }
end
for _, op in ipairs { "fsin", "fcos", "fptan", "fsincos" } do
  x87 { form = op, asm = op, cc = { w = "12", u = "03" }, weight = 0.5 }
end
x87 { form = "fprem", asm = "fprem", cc = COMPARE }
x87 { form = "fprem1", asm = "fprem1", cc = COMPARE }
x87 { form = "fxch st", asm = "fxch %st" }
x87 { form = "ffree st", asm = "ffree %st", cc = { u = "0123" }, weight = 0.5 }
x87 { form = "fcom st", asm = "fcom %st", cc = COMPARE }
x87 { form = "fcomp m64", asm = "fcomp %m64", cc = COMPARE }
x87 { form = "fucomp st", asm = "fucomp %st", cc = COMPARE }
x87 { form = "fcompp", asm = "fcompp", cc = COMPARE }
x87 { form = "ftst", asm = "ftst", cc = COMPARE }
x87 { form = "fxam", asm = "fxam", cc = COMPARE }
x87 { form = "fcomi st0,st", asm = "fcomi st0, %st", w = "CPAZSO", cc = { w = "1" } }
x87 { form = "fucomip st0,st", asm = "fucomip st0, %st", w = "CPAZSO", cc = { w = "1" } }
x87 { form = "fcmovcc st0,st", asm = "fcmov%fcc st0, %st" }
-- FSTSW reads C0..C3 after an instruction that defines them; the store itself leaves them undefined
x87 { form = "fnstsw ax", asm = "fxam\nfnstsw ax", cc = { u = "0123" } }
x87 { form = "fnstsw m16", asm = "fcom %st\nfnstsw %m16", cc = { u = "0123" } }
x87 { form = "fnstcw m16", asm = "fnstcw %m16", cc = { u = "0123" }, weight = 0.5 }
-- a new FCW: exceptions stay masked; precision and rounding vary
x87 { form = "fldcw m16", asm = "mov word %m16a, %cw\nfldcw %m16a", cc = { u = "0123" } }
x87 { form = "fnclex", asm = "fnclex", cc = { u = "0123" }, weight = 0.3 }
x87 { form = "fninit", asm = "fninit", cc = { w = "0123" }, weight = 0.2 }

-- }============================================================ faults and host exits

local function fault(t)
  t.group = "fault"
  add(t)
end
fault { form = "ud2", asm = "ud2" }
fault { form = "int3", asm = "int3" }
fault { form = "int 0x80", asm = "int 0x80" }
fault { form = "hlt", asm = "hlt" }
fault { form = "cli", asm = "cli" }
fault { form = "in al,dx", asm = "mov edx, 0x80\nin al, dx" }
fault { form = "out dx,al", asm = "mov edx, 0x80\nout dx, al" }
fault { form = "rdmsr", asm = "mov ecx, 0x10\nrdmsr" }
fault { form = "wrmsr", asm = "mov ecx, 0xc0000100\nwrmsr" }
fault { form = "mov cr3,r64", asm = "mov cr3, rax", weight = 0.5 }
fault { form = "invalid opcode", asm = "db 0x06", weight = 0.5 }
fault { form = "read unmapped page", asm = "mov r14, 0x100000000000\nmov %r, [r14]", sizes = { 8, 32, 64 } }
fault { form = "write unmapped page", asm = "mov r14, 0x100000000000\nmov [r14], %r", sizes = { 8, 32, 64 } }
fault { form = "read non-canonical", asm = "mov r14, 0x800000000000\nmov %r, [r14]", sizes = { 32, 64 } }
fault { form = "read mmio", asm = "mov r14, 0x40000000\nmov %r, [r14]", sizes = { 8, 32, 64 }, weight = 0.5 }
fault { form = "movdqa x,mu", asm = "movdqa %x, %mu" }
fault { form = "movaps mu,x", asm = "movaps %mu, %x" }
fault { form = "paddd x,mu", asm = "paddd %x, %mu" }
fault { form = "addpd x,mu", asm = "addpd %x, %mu" }
fault { form = "div r$ by 0", asm = "xor %r1, %r1\ndiv %r1", sizes = { 8, 32, 64 }, u = "CPAZSO" }

-- }============================================================ misc

add { form = "nop", asm = "nop", group = "misc", weight = 0.3 }
add { form = "pause", asm = "pause", group = "misc", weight = 0.3 }
add { form = "lfence", asm = "lfence", group = "misc", weight = 0.3 }
add { form = "mfence", asm = "mfence", group = "misc", weight = 0.3 }
add { form = "sfence", asm = "sfence", group = "misc", weight = 0.3 }
add { form = "clflush m8", asm = "clflush [r15 + %d]", group = "misc", weight = 0.3 }
add { form = "movnti m$,r$", asm = "movnti %m, %r", sizes = { 32, 64 }, group = "misc", weight = 0.3 }
add { form = "prefetcht0 m8", asm = "prefetcht0 %m8", group = "misc", weight = 0.3 }
add { form = "cpuid", asm = "mov eax, %leaf\nxor ecx, ecx\ncpuid", group = "misc" }

return T
