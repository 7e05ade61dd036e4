-- repl_helpers_spec.lua - moonvisor.repl called directly: the pretty printer,
-- completion, x, dis, regs, step, trace, breakpoints and cont, plus
-- core.disasm and cpu:debug's previous flags.
local H = require "helpers"
local R = require "moonvisor.repl"
local core = require "moonvisor.core"

-- 0x1000 mov ax, 1 / 0x1003 mov bx, 2 / 0x1006 nop / 0x1007 hlt
local SNIPPET = "mov ax, 1\nmov bx, 2\nnop\nhlt"
-- 0x1000 mov cx, 0 / 0x1003 inc cx / 0x1004 cmp cx, 3 / 0x1007 jne 0x1003 / 0x1009 hlt
local LOOP = "mov cx, 0\nl: inc cx\ncmp cx, 3\njne l\nhlt"

describe("core.disasm()", function()
  it("returns address, size, mnemonic, operands and bytes", function()
    local list = core.disasm("\xb8\x01\x00\xeb\xfe", 0x1000, 16)
    assert.same({ address = 0x1000, size = 3, mnemonic = "mov", op_str = "ax, 1", bytes = "\xb8\x01\x00" }, list[1])
    assert.same({ address = 0x1003, size = 2, mnemonic = "jmp", op_str = "0x1003", bytes = "\xeb\xfe" }, list[2])
  end)

  it("decodes in 32 and 64-bit modes and stops after count", function()
    assert.equals("eax, 1", core.disasm("\xb8\x01\x00\x00\x00", 0, 32)[1].op_str)
    assert.equals("rax, 1", core.disasm("\x48\xc7\xc0\x01\x00\x00\x00", 0, 64)[1].op_str)
    assert.equals(1, #core.disasm("\x90\x90\x90", 0, 16, 1))
  end)

  it("refuses other widths", function()
    assert.has_error(function() core.disasm("\x90", 0, 8) end, "disasm: bits must be 16, 32 or 64, got 8")
  end)
end)

describe("repl.pretty()", function()
  it("shows exits with type first and addresses in hex", function()
    assert.equals('{ type = "io", data = 0x41, port = 0x3f8, size = 1, write = true }',
                  R.pretty { type = "io", port = 0x3f8, size = 1, write = true, data = 0x41 })
  end)

  it("prints strings bare at the top, quoted inside, and marks cycles", function()
    local t = { 1, "a\nb", k = { x = 1 } }
    t.self = t
    assert.equals("hi", R.pretty("hi"))
    assert.equals('{ 1, "a\\nb", k = { x = 1 }, self = <cycle> }', R.pretty(t))
    assert.equals("42", R.pretty(42))
  end)

  it("breaks long tables over lines", function()
    local _, cpu = H.real(SNIPPET)
    local s = R.pretty(cpu:read_state())
    assert.matches("^{\n  r10 = 0x0,\n", s)
    assert.matches("\n  rip = 0x1000,\n", s)
  end)
end)

describe("repl.complete()", function()
  it("completes methods of userdata through their metatable", function()
    local _, cpu = H.real(SNIPPET)
    assert.same({ "cpu:read_state" }, R.complete("cpu:re", { cpu = cpu }))
    assert.same({ "cpu:write_fpu", "cpu:write_sregs", "cpu:write_state" }, R.complete("cpu:wr", { cpu = cpu }))
  end)

  it("completes globals, keywords and fields of tables", function()
    local env = { string = string, mytable = { alpha = 1, beta = 2 } }
    assert.same({ "string.format" }, R.complete("string.fo", env))
    assert.same({ "mytable.alpha" }, R.complete("mytable.al", env))
    assert.same({ "mytable" }, R.complete("myt", env))
    assert.same({ "repeat", "return" }, R.complete("re", {}))
    assert.same({}, R.complete("nothing.here", env))
  end)
end)

describe("x()", function()
  it("dumps hex and ASCII as hexdump -C does", function()
    local g = H.real("db 'Hello, moonvisor', 0x90")
    assert.equals(
      "00001000  48 65 6c 6c 6f 2c 20 6d  6f 6f 6e 76 69 73 6f 72  |Hello, moonvisor|\n" ..
      "00001010  90 00                                             |..|", R.x(g, 0x1000, 18))
  end)

  it("marks bytes outside guest memory and takes a vcpu", function()
    local _, cpu = H.real(SNIPPET)
    assert.equals("0000fffe  00 00 ?? ??                                       |..??|", R.x(cpu, 0xfffe, 4))
  end)
end)

describe("dis()", function()
  it("disassembles from rip in real mode and marks it", function()
    local _, cpu = H.real(SNIPPET)
    local lines = {}
    for l in R.dis(cpu, nil, 4):gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equals("=>  0x1000:  b8 01 00                 mov ax, 1", lines[1])
    assert.matches("0x1003:  bb 02 00%s+mov bx, 2$", lines[2])
    assert.matches("0x1006:  90%s+nop$", lines[3])
    assert.matches("0x1007:  f4%s+hlt$", lines[4])
  end)

  it("shows the original bytes under a breakpoint, marked with *", function()
    local g, cpu = H.real(SNIPPET)
    R.breakpoint(cpu, 0x1003)
    assert.equals(0xcc, g:u8(0x1003))
    assert.matches("  %* 0x1003:  bb 02 00%s+mov bx, 2", R.dis(cpu, 0x1003, 1))
    assert.matches("bb 02 00", R.x(g, 0x1003, 3))
    R.delete(cpu)
  end)
end)

describe("regs()", function()
  it("shows registers, decoded flags and the mode", function()
    local _, cpu = H.real(SNIPPET)
    cpu:write_state { rax = 0x1234, rflags = 0x246 }
    local s = R.regs(cpu)
    assert.matches("rax 00001234", s)
    assert.matches("rip 00001000  rflags 00000246 %[PF ZF IF%]", s)
    assert.matches("mode real", s)
    assert.matches("linear rip 0x1000", s)
  end)
end)

describe("step() and trace()", function()
  it("step advances exactly one instruction and restores the debug flags", function()
    local _, cpu = H.real(SNIPPET)
    local s = R.step(cpu)
    assert.equals(0x1003, cpu.rip)
    assert.equals("step", s.how)
    assert.equals("0x1003:  mov bx, 2", tostring(s))
    assert.same({ singlestep = false, breakpoints = false }, cpu:debug())
    R.step(cpu, 2)
    assert.equals(0x1007, cpu.rip)
    assert.equals(2, cpu.rbx & 0xffff)
  end)

  it("stops stepping at a hlt", function()
    local _, cpu = H.real(SNIPPET)
    local s = R.step(cpu, 10)
    assert.equals("hlt", s.how)
    assert.equals(0x1008, cpu.rip)
  end)

  it("trace prints each instruction before it runs", function()
    local _, cpu = H.real(LOOP)
    local out = {}
    R.trace(cpu, 5, function(l) out[#out + 1] = l end)
    assert.same({ "0x1000:  mov cx, 0", "0x1003:  inc cx", "0x1004:  cmp cx, 3", "0x1007:  jne 0x1003",
                  "0x1003:  inc cx" }, out)
  end)
end)

describe("breakpoint() and cont()", function()
  it("stops at the breakpoint with rip on it, and again each time round a loop", function()
    local g, cpu = H.real(LOOP)
    local bp = R.breakpoint(cpu, 0x1004)
    assert.equals("breakpoint 1 at 0x1004", tostring(bp))
    for i = 1, 3 do
      local s = R.cont(cpu)
      assert.equals("breakpoint", s.how)
      assert.equals(bp, s.breakpoint)
      assert.equals(0x1004, cpu.rip)
      assert.equals(i, cpu.rcx & 0xffff)
      assert.equals("breakpoint 1 at 0x1004:  cmp cx, 3", tostring(s))
    end
    local s = R.cont(cpu)
    assert.equals("hlt", s.how)
    assert.equals(0xcc, g:u8(0x1004))   -- still set
  end)

  it("steps over a breakpoint at rip", function()
    local _, cpu = H.real(SNIPPET)
    R.breakpoint(cpu, 0x1000)
    local s = R.step(cpu)
    assert.equals(0x1003, cpu.rip)
    assert.equals(1, cpu.rax & 0xffff)
    assert.equals("step", s.how)
  end)

  it("delete by id or address puts the byte back; cont then runs to hlt", function()
    local g, cpu = H.real(SNIPPET)
    local a = R.breakpoint(cpu, 0x1003)
    local b = R.breakpoint(cpu, 0x1006)
    assert.equals(2, #R.breakpoints(cpu))
    assert.equals(1, R.delete(cpu, a.id))
    assert.equals(0xbb, g:u8(0x1003))
    assert.equals(1, R.delete(cpu, 0x1006))
    assert.equals(0x90, g:u8(0x1006))
    assert.equals(0, #R.breakpoints(cpu))
    assert.same({ singlestep = false, breakpoints = false }, cpu:debug())
    assert.equals("hlt", R.cont(cpu).how)
    assert.is_nil(b.nothing)
  end)

  it("turns breakpoint exits on so cpu:run stops there too", function()
    local _, cpu = H.real(SNIPPET)
    R.breakpoint(cpu, 0x1006)
    local e = cpu:run()
    assert.equals("debug", e.type)
    assert.equals(3, e.exception)
    assert.equals(0x1006, cpu.rip)
  end)

  it("reports a timeout and an int3 that is not ours", function()
    local _, spin = H.real("jmp $")
    local s = R.cont(spin, { timeout_ms = 20 })
    assert.equals("timeout", s.how)
    assert.equals("timeout at 0x1000:  jmp 0x1000", tostring(s))
    local _, cpu = H.real("nop\nint3\nhlt")
    s = R.cont(cpu)
    assert.equals("int3", s.how)
    assert.equals(0x1001, s.rip)
  end)

  -- Known soft-backend bug (core): after single steps that stop on the jne,
  -- a run makes no progress.  Pending there until the core is fixed.
  local after_steps = it
  after_steps("runs on after single steps", function()
    local _, cpu = H.real(LOOP)
    R.step(cpu, 3)
    assert.equals(0x1007, cpu.rip)
    local s = R.cont(cpu, { timeout_ms = 500 })
    assert.equals("hlt", s.how)
    assert.equals(3, cpu.rcx & 0xffff)
  end)

  it("refuses what is not a vcpu", function()
    assert.has_error(function() R.step({}) end, "step: expected a moonvisor.Vcpu, got table")
    assert.has_error(function() R.cont(nil) end, "cont: expected a moonvisor.Vcpu, got nil")
  end)
end)

describe("cpu:debug()", function()
  it("returns the previous flags", function()
    local _, cpu = H.real(SNIPPET)
    assert.same({ singlestep = false, breakpoints = false }, cpu:debug { singlestep = true })
    assert.same({ singlestep = true, breakpoints = false }, cpu:debug { breakpoints = true })
    assert.same({ singlestep = false, breakpoints = true }, cpu:debug())
  end)
end)

-- A long-mode guest on page tables of its own (at 0x4000): the first 2 MiB
-- identity-mapped with one 2 MiB page, and virtual 0x40000000 -> physical
-- 0x3000 with a 4 KiB page; 0x40001000 is not mapped.  The code at 0x3000:
-- 0x40000000 mov eax, 1 / 0x40000005 mov ebx, 2 / 0x4000000a nop / 0x4000000b hlt
--
-- Running there needs KVM: on the soft backend Unicorn 2.0.1 (Debian 12)
-- walks the tables for faults but then fetches and reads at the virtual
-- address as if it were physical (identity maps hide it), so the run part
-- is a kvm-pass spec only (README "Backends").  x, dis and breakpoint only
-- read the tables: both passes.
local run_paged = H.kvm and it or function() end
local function paged()
  local g, cpu = H.moded("long", "hlt")
  g:write(0x3000, H.asm("org 0x40000000\nmov eax, 1\nmov ebx, 2\nnop\nhlt", 64))
  g:u64(0x4000, 0x5000 | 3)          -- PML4[0] -> PDPT
  g:u64(0x5000, 0x6000 | 3)          -- PDPT[0] -> PD (0 .. 1 GiB)
  g:u64(0x6000, 0x0 | 0x83)          --   PD[0]: 2 MiB page at 0
  g:u64(0x5008, 0x7000 | 3)          -- PDPT[1] -> PD (1 .. 2 GiB)
  g:u64(0x7000, 0x8000 | 3)          --   PD[0] -> PT
  g:u64(0x8000, 0x3000 | 3)          --     PT[0]: 0x40000000 -> 0x3000
  cpu:write_sregs { cr3 = 0x4000 }
  cpu.rip = 0x40000000
  return g, cpu
end

describe("the helpers with paging on", function()
  it("x and dis read virtual addresses through the page tables; unmapped pages show ??", function()
    local g, cpu = paged()
    assert.equals("40000000  b8 01 00 00 00 bb 02 00  00 00 90 f4              |............|",
                  R.x(cpu, 0x40000000, 12))
    assert.equals("40000ffc  00 00 00 00 ?? ?? ?? ??                           |....????|", R.x(cpu, 0x40000ffc, 8))
    assert.matches("^00003000  b8 01 00 00 00", R.x(g, 0x3000, 5))   -- a guest: physical
    local lines = {}
    for l in R.dis(cpu, nil, 4):gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equals("=>  0x40000000:  b8 01 00 00 00           mov eax, 1", lines[1])
    assert.matches("0x40000005:  bb 02 00 00 00%s+mov ebx, 2$", lines[2])
    assert.matches("0x4000000b:  f4%s+hlt$", lines[4])
    assert.matches("linear rip 0x40000000", R.regs(cpu))
  end)

  it("breakpoint patches the physical byte behind a virtual address; x and dis show the original", function()
    local g, cpu = paged()
    local bp = R.breakpoint(cpu, 0x4000000a)
    assert.equals(0x300a, bp.pa)
    assert.equals(0xcc, g:u8(0x300a))
    assert.matches("  %* 0x4000000a:  90%s+nop", R.dis(cpu, 0x4000000a, 1))
    assert.matches("^4000000a  90 f4", R.x(cpu, 0x4000000a, 2))
    assert.matches("^0000300a  90 f4", R.x(g, 0x300a, 2))
    assert.has_error(function() R.breakpoint(cpu, 0x40001000) end,
                     "breakpoint: 0x40001000 is not mapped by the page tables")
    assert.equals(1, R.delete(cpu, bp.id))
    assert.equals(0x90, g:u8(0x300a))
    assert.same({ singlestep = false, breakpoints = false }, cpu:debug())
  end)

  it("runs to a breakpoint and steps over it under the identity tables of mode long", function()
    local g, cpu = H.moded("long", "mov eax, 1\nmov ebx, 2\nnop\nhlt")
    local bp = R.breakpoint(cpu, 0x100a)
    assert.equals(0x100a, bp.pa)
    assert.equals("breakpoint 1 at 0x100a:  nop", tostring(R.cont(cpu)))
    assert.equals("0x100b:  hlt", tostring(R.step(cpu)))
    assert.equals(0xcc, g:u8(0x100a))
    R.delete(cpu)
    assert.equals(0x90, g:u8(0x100a))
  end)

  run_paged("stops at a breakpoint's virtual rip, steps over it and deletes it", function()
    local g, cpu = paged()
    R.breakpoint(cpu, 0x4000000a)
    local s = R.cont(cpu)
    assert.equals("breakpoint", s.how)
    assert.equals(0x4000000a, cpu.rip)
    assert.equals("breakpoint 1 at 0x4000000a:  nop", tostring(s))
    assert.equals(2, cpu.rbx)
    s = R.step(cpu)
    assert.equals("0x4000000b:  hlt", tostring(s))
    assert.equals(0xcc, g:u8(0x300a))   -- back in after the step
    assert.equals(1, R.delete(cpu, 0x4000000a))
    assert.equals(0x90, g:u8(0x300a))
    assert.equals("hlt", R.cont(cpu).how)
  end)
end)
