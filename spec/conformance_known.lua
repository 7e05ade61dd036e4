-- conformance_known.lua - the documented differences between the soft
-- backend and KVM that the conformance tester (bench/conformance.lua,
-- moonvisor.conformance) finds, one entry per cause, each with a
-- reproducer.  `make conformance` fails on a class no entry covers (a new
-- difference: fix it or document it here) and on an entry whose reproducer
-- no longer differs (remove it).  Format: scripts/moonvisor/conformance/known.lua.
--
-- side:  unicorn    Unicorn 2.0.1 (QEMU 5.0's TCG) differs from the SDM
--        moonvisor  the soft backend's own code (core/soft) differs from KVM
--        reference  the reference is wrong and soft is right: in the nested
--                   test VM, KVM's CPL3 code runs on QEMU 7.2's TCG
-- Each entry was checked against the SDM and in the nested VM (2026-11-29).
-- hosts: the kinds of reference an entry applies to (conformance.known.kind:
-- "tcg" is KVM whose CPL3 code QEMU's TCG runs, as in the nested test VM;
-- "hardware", "pvm", "nested" otherwise); entries without run everywhere.
-- On a hardware reference expect other classes (where both QEMUs differ
-- from silicon alike, e.g. which NaN SSE arithmetic returns, x87 stack
-- underflow): they have not been measured.
-- Forms are Lua patterns over a class's form ("fld m64 [pc24]"); a class
-- belongs to the first entry with a matching form whose items include all
-- of the class's items.
local f64 = function(x) return string.pack("<d", x) end
local function u64(v) return string.pack("<i8", v) end
local function f80(se, sig) return string.pack("<i8I2", sig, se) end
local Q = function(x) return f64(x) .. u64(0) end   -- an xmm register with a double in its low lane

local SSE_FP = { "^add[ps][sd] ", "^sub[ps][sd] ", "^mul[ps][sd] ", "^div[ps][sd] ", "^min[ps][sd] ",
                 "^max[ps][sd] ", "^sqrt[ps][sd] ", "^cmp[ps][sd] ", "^u?comis[sd] ", "^cvt", "^rcp", "^rsqrt" }
local SHIFTS_MEM = { "^sh[lr] m", "^sar m", "^sh[lr]d m", "^ro[lr] m", "^rc[lr] m" }
local TRANSCENDENTAL = { "^f2xm1", "^fyl2x", "^fpatan", "^fptan", "^fsin", "^fcos", "^fprem", "^fscale",
                         "^fxtract", "^frndint" }

return {
  -- {============================================================ the reference

  { id = "ref-cmpxchg8b-flags", side = "reference", hosts = { "tcg" },
    cause = "QEMU 7.2: cmpxchg8b/cmpxchg16b after a flag-setting instruction lose CF, PF, AF, SF and OF "
      .. "(the SDM leaves them unchanged), sometimes for garbage that can set TF (a #DB on the next instruction), "
      .. "AC or other RFLAGS bits; its helper computes the flags from a lazy-flags state TCG may not have "
      .. "written back, so the garbage depends on translation-block boundaries and can surface at a later "
      .. "instruction that reads RFLAGS (an exception's frame after a ud2, seen once in CI)",
    forms = { "^cmpxchg8b", "^cmpxchg16b" }, later = true,
    items = { "CF", "PF", "AF", "SF", "OF", "DF", "RF", "AC", "rflags", "exit.type", "exit.vector", "exit.rip", "gpr" },
    reproducer = { form = "cmpxchg8b m64", code = { "test al, 1", "lock cmpxchg8b qword [r15 - 0xc0]" },
                   state = { mem = { [-0xc0] = u64(0x1122334455667788) } } } },

  { id = "ref-x87-precision", side = "reference", hosts = { "tcg" },
    cause = "QEMU 7.2 rounds x87 loads and transcendental results to the precision control of FCW "
      .. "(the SDM applies it to fadd, fsub, fmul, fdiv and fsqrt only)",
    forms = { "^fld m32 %[.*pc", "^fld m64 %[.*pc", "^fild .*%[.*pc", "^f2xm1 %[.*pc", "^fyl2x.*%[.*pc",
              "^fpatan %[.*pc", "^fptan %[.*pc", "^fsin.*%[.*pc", "^fcos %[.*pc", "^fscale %[.*pc",
              "^fxtract %[.*pc", "^fprem.*%[.*pc" },
    items = { "st", "st.precision", "fsw.flags", "fsw.cc" },
    reproducer = { form = "fld m64", code = { "fld qword [r15]" },
                   state = { fpu = { fcw = 0x07f }, mem = { [0] = u64(0x3ff0000000000001) } } } },

  { id = "ref-idt-error-code", side = "reference", hosts = { "tcg" },
    cause = "QEMU 7.2: INT n past the IDT's limit in long mode is #GP with error code n*16+2; the SDM's "
      .. "is the vector as an IDT selector index, n*8+2 (soft gives that)",
    forms = { "^int " }, items = { "exit.error_code" },
    reproducer = { form = "int 0x80", code = { "int 0x80" } } },

  -- }============================================================ Unicorn 2.0.1

  { id = "sse-mxcsr-flags", side = "unicorn",
    cause = "SSE/SSE2 floating point never sets the MXCSR exception flags (PE, UE, OE, ZE, DE, IE)",
    forms = SSE_FP, items = { "mxcsr.flags" },
    reproducer = { form = "addsd x,x", code = { "addsd xmm0, xmm1" },
                   state = { xmm = { Q(1.0), Q(1 / 3) } } } },

  { id = "sse-ftz", side = "unicorn",
    cause = "MXCSR.FTZ is ignored: tiny SSE results stay denormal instead of becoming zero",
    forms = { "%[.*ftz" }, items = { "xmm", "xmm.denormal", "mxcsr.flags" },
    reproducer = { form = "mulsd x,x", code = { "mulsd xmm0, xmm1" },
                   state = { fpu = { mxcsr = 0x9f80 }, xmm = { u64(0x0010000000000000) .. u64(0), Q(0.5) } } } },

  { id = "sse-misaligned", side = "unicorn",
    cause = "misaligned 16-byte SSE memory operands (movdqa, movaps, paddd, addpd ...) do not raise #GP(0)",
    forms = { "x,mu", "mu,x" }, items = { "exit.type" },
    reproducer = { form = "movdqa x,mu", code = { "movdqa xmm0, [r15 + 1]" } } },

  { id = "x87-fstsw", side = "unicorn",
    cause = "the x87 exception flags Unicorn leaves clear (x87-flags) reach AX or memory through fnstsw",
    forms = { "^fnstsw" }, items = { "gpr", "mem", "fsw.flags", "fsw.cc" },
    reproducer = { form = "fnstsw ax", code = { "fsqrt", "fnstsw ax" },
                   state = { fpu = { ftw = 1 }, st = { f80(0x4000, math.mininteger) } } } },

  { id = "x87-flags", side = "unicorn",
    cause = "x87 instructions do not set the FSW exception flags (PE, IE, ZE, DE, UE, OE)",
    forms = { "^f" }, items = { "fsw.flags" },
    reproducer = { form = "fsqrt", code = { "fsqrt" }, state = { fpu = { ftw = 1 }, st = { f80(0x4000, math.mininteger) } } } },

  { id = "x87-snan-convert", side = "unicorn",
    cause = "a signalling NaN converted between the x87 format and 32/64-bit floats stays signalling: fld "
      .. "m32/m64 loads it unchanged, fst/fstp m32/m64 store it unquieted (the SDM quiets it and sets IE)",
    forms = { "^fld m32", "^fld m64", "^fstp? m32", "^fstp? m64" }, items = { "st.nan", "fsw.flags", "mem" },
    reproducer = { form = "fld m64", code = { "fld qword [r15]" }, state = { mem = { [0] = u64(0x7ff4000000000000) } } } },

  { id = "x87-constant-rounding", side = "unicorn",
    cause = "fldpi, fldl2e, fldl2t, fldlg2 and fldln2 ignore the rounding control",
    forms = { "^fldpi", "^fldl2[et]", "^fldlg2", "^fldln2" }, items = { "st.precision" },
    reproducer = { form = "fldpi", code = { "fldpi" }, state = { fpu = { fcw = 0x77f } } } },

  { id = "x87-transcendental", side = "unicorn",
    cause = "f2xm1, fyl2x(p1), fpatan, fptan, fsin, fcos, fsincos, fprem(1), fscale, fxtract and frndint go "
      .. "through host double precision: other low-order bits, signs of zero, NaNs and stack effects",
    forms = TRANSCENDENTAL,
    items = { "st", "st.precision", "st.nan", "fsw.flags", "fsw.cc", "fsw.top", "fsw.stack", "ftw" },
    reproducer = { form = "f2xm1", code = { "f2xm1" }, state = { fpu = { ftw = 1 }, st = { f80(0x3ffe, math.mininteger) } } } },

  { id = "x87-unsupported", side = "unicorn",
    cause = "unsupported x87 encodings (unnormals, pseudo-denormals, pseudo-NaNs) are taken as numbers: "
      .. "fxam calls them normal, arithmetic computes with them instead of giving the indefinite NaN, "
      .. "fcomi/fucomi order a pseudo-denormal by another value (EFLAGS' CF, ZF, PF)",
    forms = { "^f" }, items = { "fsw.cc", "st", "st.nan", "st.precision", "fsw.flags", "gpr", "CF", "ZF", "PF" },
    reproducer = { form = "fxam", code = { "fxam" },
                   state = { fpu = { ftw = 1 }, st = { f80(0x3fff, 0x4000000000000000) } } } },

  { id = "fcomi-flags", side = "unicorn",
    cause = "fcomi, fcomip, fucomi and fucomip keep OF, SF and AF as they were; the SDM clears them. QEMU 7.2 "
      .. "(the nested VM's reference) keeps them too, so there the class shows only when an earlier "
      .. "instruction left them different (shift-memory-flags, in case 1738 of seed 90c0ff0...)",
    forms = { "^fu?comip? " }, items = { "OF", "SF", "AF" },
    reproducer = { form = "fucomip st0,st", code = { "sar qword [r15], cl", "fld1\nfldz\nfucomip st0, st1" },
                   state = { regs = { rcx = 15 }, mem = { [0] = u64(0x8302000000004000) } } } },

  { id = "x87-fisttp-range", side = "unicorn",
    cause = "fisttp of an out-of-range value stores the saturated integer, not the integer indefinite (0x80000000)",
    forms = { "^fisttp", "^fistp?" }, items = { "mem", "fsw.flags" },
    reproducer = { form = "fisttp m32", code = { "fisttp dword [r15]" },
                   state = { fpu = { ftw = 1 }, st = { f80(0x4062, 0xc9f2c9cd04674edf) } } } },

  { id = "shift-memory-flags", side = "unicorn",
    cause = "shifts with a memory destination compute CF and OF wrong while a memory-write hook is installed "
      .. "(the soft backend's dirty-page hook): Unicorn's hook call clobbers the lazily computed flags",
    forms = SHIFTS_MEM, items = { "CF", "OF", "PF", "ZF", "SF", "AF" },
    reproducer = { form = "sar m64,cl", code = { "sar qword [r15], cl" },
                   state = { regs = { rcx = 15 }, mem = { [0] = u64(0x8302000000004000) } } } },

  { id = "lock-neg-flags", side = "unicorn",
    cause = "lock neg of memory sets SF and PF wrong",
    forms = { "^lock neg m" }, items = { "SF", "PF", "ZF", "AF", "CF" },
    reproducer = { form = "lock neg m8", code = { "lock neg byte [r15]" }, state = { mem = { [0] = "\1" } } } },

  { id = "cmpxchg32-zero-extends", side = "unicorn",
    cause = "32-bit cmpxchg zero-extends a register the CPU leaves alone: the destination of a failed "
      .. "cmpxchg r32,r32, and RAX when a cmpxchg r32,r32 or m32,r32 succeeds",
    forms = { "^cmpxchg r32,r32", "^lock cmpxchg m32,r32" }, items = { "gpr" },
    reproducer = { form = "cmpxchg r32,r32", code = { "cmpxchg ebx, ecx" },
                   state = { regs = { rax = 1, rbx = 0xffffffff00000002, rcx = 5 } } } },

  { id = "mmio-width", side = "unicorn",
    cause = "an 8-byte MMIO read reaches the host as two 4-byte reads (Unicorn's MMIO regions are 4 bytes "
      .. "wide): the exit names the second",
    forms = { "^read mmio" }, items = { "exit.mem" },
    reproducer = { form = "read mmio", code = { "mov r14, 0x40000000\nmov rax, [r14]" } } },

  -- }============================================================ moonvisor's soft backend

  { id = "exception-rf", side = "moonvisor",
    cause = "exception exits leave RFLAGS.RF clear; KVM returns the frame's RFLAGS, where a fault sets RF "
      .. "(resuming there with RF set skips an instruction breakpoint on the faulting instruction once)",
    forms = { "^ud2", "^invalid opcode", "unmapped page", "non%-canonical", "^i?div", "^int", "x,mu", "mu,x",
              "^hlt", "^cli", "^in al", "^out dx", "^rdmsr", "^wrmsr", "^mov cr3" },
    items = { "RF" },
    reproducer = { form = "ud2", code = { "ud2" } } },

  { id = "cpuid", side = "moonvisor",
    cause = "CPUID: the soft backend offers a CPU of its own (the features Unicorn executes), not the host's",
    forms = { "^cpuid" }, items = { "gpr" },
    reproducer = { form = "cpuid", code = { "mov eax, 1\nxor ecx, ecx\ncpuid" } } },
}
