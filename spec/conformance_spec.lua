-- conformance_spec.lua - what a guest sees is the same on both backends,
-- KVM being the reference: the state of a new VCPU, system calls,
-- exceptions and privilege at CPL3 in mode = "user".  Nothing here is
-- tagged #kvm: each spec runs in both passes.
local mv = require "moonvisor"
local H = require "helpers"

local CODE = 0x100000

-- A 4 MiB guest with `source` (64-bit nasm) at CODE and a VCPU there.
local function guest(source, mode)
  local g = H.guest()
  g:map(0, mv.vmo(0x400000))
  g:write(CODE, H.asm("org 0x100000\n" .. source, 64))
  return g, g:vcpu{ entry = CODE, mode = mode or "user", stack = 0x200000 }
end

-- The address `before` (nasm) ends at: where the instruction after it starts.
local function after(before)
  return CODE + #H.asm("org 0x100000\n" .. before, 64)
end

describe("a new VCPU", function()
  local RESET = { fcw = 0x37f, fsw = 0, ftw = 0, mxcsr = 0x1f80 }   -- ftw abridged: every register empty

  local function fpu_state(cpu)
    local f = cpu:fpu()
    return { fcw = f.fcw, fsw = f.fsw, ftw = f.ftw, mxcsr = f.mxcsr }
  end

  it("has the x87 and SSE state of a CPU after reset", function()
    local g = H.guest()
    g:map(0, mv.vmo(0x400000))
    assert.same(RESET, fpu_state(g:vcpu{ entry = 0x1000 }))
    assert.same(RESET, fpu_state(g:vcpu{ entry = CODE, mode = "long" }))   -- and after the switch to long mode
    g:close()
  end)

  it("runs its first instruction with FCW 0x37f, MXCSR 0x1f80 and every x87 tag empty", function()
    local g, cpu = guest([[
      fnstcw [0x180000]
      stmxcsr [0x180004]
      fnstenv [0x180010]    ; the full tag word at +8
      hlt]], "long")
    assert.equals("hlt", cpu:run{ timeout_ms = 5000 }.type)
    assert.same({ 0x37f, 0x1f80, 0xffff }, { g:u16(0x180000), g:u32(0x180004), g:u16(0x180018) })
    g:close()
  end)
end)

describe('a system call in mode = "user"', function()
  it("leaves the RIP after it in RCX and RFLAGS in R11, and the exit names that RIP", function()
    local before = [[
      mov rcx, 0x1111       ; both overwritten by the CPU
      mov r11, 0x2222
      stc                   ; RFLAGS 0x203
      ]]
    local g, cpu = guest(before .. "syscall\nnext: mov rax, 60\nsyscall")
    local next_rip = after(before .. "syscall")
    local e = cpu:run{ timeout_ms = 5000 }
    assert.same({ "syscall", next_rip }, { e.type, e.rip })
    assert.same({ next_rip, 0x203, next_rip, 0x203 }, { cpu.rcx, cpu.r11, cpu.rip, cpu.rflags })
    e = cpu:run{ timeout_ms = 5000 }   -- resumes after it
    assert.same({ "syscall", 60 }, { e.type, cpu.rax })
    g:close()
  end)
end)

-- Runs `before` then the faulting `insn` at CPL3; the exit, the VCPU, the
-- guest and the faulting instruction's address.
local function fault(before, insn, opts)
  local g, cpu = guest(before .. "\n" .. insn .. "\nmov rax, 60\nsyscall")
  if opts and opts.setup then opts.setup(g, cpu) end
  return cpu:run{ timeout_ms = 5000 }, cpu, g, after(before)
end

-- An exception exit as a table of its fields that matter here.
local function exc(e)
  return { type = e.type, vector = e.vector, error_code = e.error_code, rip = e.rip }
end

describe('exceptions in mode = "user"', function()
  local NOT_MAPPED = 0x100000000000   -- canonical, outside the sandbox's page tables
  local cases = {
    { "ud2", "", "ud2", 6 },
    { "a divide error", "xor ecx, ecx\nmov eax, 1\ncdq", "idiv ecx", 0 },
    { "an unsigned divide error", "xor ecx, ecx\nxor edx, edx", "div rcx", 0 },
    { "a misaligned cmpxchg16b", "mov rdi, 0x180001", "lock cmpxchg16b [rdi]", 13, 0 },
    { "a load from a non-canonical address", "mov rbx, 0x8000000000000000", "mov rax, [rbx]", 13, 0 },
    { "a store to a non-canonical address", "mov rbx, 0x8000000000000000", "mov [rbx], rax", 13, 0 },
    { "a lock prefix on an instruction that takes none", "", "db 0xf0, 0x90", 6 },
    { "an unmasked x87 exception, at the next waiting instruction",
      "fninit\nmov word [0x180000], 0x37b\nfldcw [0x180000]\nfld1\nfldz\nfdivp", "fwait", 16 },
  }
  for _, c in ipairs(cases) do
    it("reports " .. c[1] .. " as vector " .. c[4] .. (c[5] and (" with error code " .. c[5]) or "") ..
       " at the faulting instruction", function()
      local e, cpu, g, rip = fault(c[2], c[3])
      assert.same({ type = "exception", vector = c[4], error_code = c[5], rip = rip }, exc(e))
      assert.equals(rip, cpu.rip)
      g:close()
    end)
  end

  it("reports page faults with the P, W and U bits of the error code and the address in CR2", function()
    local reads = { "mov rbx, " .. NOT_MAPPED, "mov rax, [rbx]", 4 }
    local writes = { "mov rbx, " .. NOT_MAPPED, "mov [rbx], rax", 6 }
    for _, c in ipairs{ reads, writes } do
      local e, cpu, g, rip = fault(c[1], c[2])
      assert.same({ type = "exception", vector = 14, error_code = c[3], rip = rip }, exc(e))
      assert.equals(NOT_MAPPED, cpu:sregs().cr2)
      g:close()
    end
  end)

  it("leaves CR2 alone when nothing faults", function()
    local g, cpu = guest("mov rax, 60\nsyscall")
    assert.equals("syscall", cpu:run{ timeout_ms = 5000 }.type)
    assert.equals(0, cpu:sregs().cr2)
    g:close()
  end)

  it("leaves CR2 and the next fault alone when the host writes memory outside the page tables", function()
    local g, cpu = guest("xor ecx, ecx\nidiv ecx")
    local far = 0x4000000000   -- guest-physical RAM at 256 GiB, beyond the sandbox's 4 GiB of page tables
    g:map(far, mv.vmo(0x1000))
    g:write(far, "x")
    assert.same({ type = "exception", vector = 0, rip = after("xor ecx, ecx") }, exc(cpu:run{ timeout_ms = 5000 }))
    assert.equals(0, cpu:sregs().cr2)
    g:unmap(far)
    assert.equals(0, cpu:sregs().cr2)
    g:close()
  end)

  it("reports every later fault of a VCPU as itself, not as a double fault", function()
    local de, pf, ud = "xor ecx, ecx\nidiv ecx\n", "mov rbx, 0x100000000000\nmov rax, [rbx]\n", "ud2\n"
    local g, cpu = guest(de .. pf .. ud)
    local function from(rip)
      cpu.rip = rip
      return exc(cpu:run{ timeout_ms = 5000 })
    end
    for _ = 1, 2 do
      assert.same({ type = "exception", vector = 0, rip = after("xor ecx, ecx") }, from(CODE))
      assert.same({ type = "exception", vector = 14, error_code = 4, rip = after(de .. "mov rbx, 0x100000000000") },
                  from(after(de)))
      assert.same({ type = "exception", vector = 0, rip = after("xor ecx, ecx") }, from(CODE))
      assert.same({ type = "exception", vector = 6, rip = after(de .. pf) }, from(after(de .. pf)))
    end
    g:close()
  end)

  it("reports INT n through the sandbox's DPL 0 gates as #GP(n*8+2) at the INT instruction", function()
    -- QEMU's TCG, which runs CPL3 code in the nested test VM (mv.host().kind
    -- "nested"), pushes n*16+2 there, and for some n the RIP after the INT:
    -- deviations of that host, not of moonvisor
    local qemu = H.kvm and mv.host(H.backend).kind == "nested"
    for _, c in ipairs{ { "int 0x80", 0x80 }, { "int 0x21", 0x21 }, { "int 14", 14 } } do
      local e, _, g, rip = fault("nop", c[1])
      local x = exc(e)
      if qemu and x.rip == rip + 2 then x.rip = rip end   -- QEMU gives one or the other (INT imm8 is 2 bytes)
      assert.same({ type = "exception", vector = 13, error_code = c[2] * (qemu and 16 or 8) + 2, rip = rip }, x)
      g:close()
    end
  end)

  it("reports int3 through the sandbox's DPL 3 breakpoint gate as vector 3 after the int3", function()
    local e, _, g, rip = fault("nop", "int3")
    assert.same({ type = "exception", vector = 3, rip = rip + 1 }, exc(e))
    g:close()
  end)
end)

describe("privilege at CPL3", function()
  local privileged = {
    { "hlt", "", "hlt" },
    { "cli", "", "cli" },
    { "sti", "", "sti" },
    { "a read of CR0", "", "mov rax, cr0" },
    { "a write to CR3", "mov rax, 0x1000", "mov cr3, rax" },
    { "rdmsr", "mov ecx, 0xc0000080", "rdmsr" },
    { "wrmsr", "xor eax, eax\nxor edx, edx\nmov ecx, 0xc0000102", "wrmsr" },
    { "lgdt", "", "lgdt [0x180000]" },
    { "lidt", "", "lidt [0x180000]" },
    { "invlpg", "", "invlpg [0x180000]" },
    { "clts", "", "clts" },
    { "wbinvd", "", "wbinvd" },
    { "a read of DR7", "", "mov rax, dr7" },
    { "swapgs", "", "swapgs" },
    { "sysret", "", "o64 sysret" },
    { "lmsw", "", "lmsw ax" },
    { "ltr", "mov ax, 0x30", "ltr ax" },
    { "rdpmc (CR4.PCE clear)", "xor ecx, ecx", "rdpmc" },
    { "in from a port (IOPL 0, no I/O bitmap)", "", "in al, 0x80" },
    { "out to a port", "", "out 0x80, al" },
    { "out to a port in DX", "mov dx, 0x3f8", "out dx, al" },
    { "a 32-bit in from a port in DX", "mov dx, 0xcfc", "in eax, dx" },
  }
  for _, c in ipairs(privileged) do
    it("makes " .. c[1] .. " a #GP(0) at the instruction", function()
      local e, cpu, g, rip = fault(c[2], c[3])
      assert.same({ type = "exception", vector = 13, error_code = 0, rip = rip }, exc(e))
      assert.equals(rip, cpu.rip)
      g:close()
    end)
  end

  it("refuses string IO without touching the registers or reaching a trap", function()
    local regs = "mov rax, 0x1234\nmov rcx, 3\nmov rsi, 0x180000\nmov rdi, 0x180100\nmov dx, 0x80\ncld"
    for _, insn in ipairs{ "rep outsb", "rep insb", "in al, dx" } do
      local called = false
      local e, cpu, g, rip = fault(regs, insn, { setup = function(g)
        g:trap("io", 0x80, 1, function() called = true end)
      end })
      assert.same({ type = "exception", vector = 13, error_code = 0, rip = rip }, exc(e))
      assert.same({ 0x1234, 3, 0x180000, 0x180100 }, { cpu.rax, cpu.rcx, cpu.rsi, cpu.rdi })
      assert.is_false(called)
      g:close()
    end
  end)

  it("reports the selector in the error code of a refused segment load or return to ring 0", function()
    local e, _, g, rip = fault("mov ax, 0x10", "mov ds, ax")   -- kernel data: DPL 0 < CPL 3
    assert.same({ type = "exception", vector = 13, error_code = 0x10, rip = rip }, exc(e))
    g:close()
    e, _, g, rip = fault("push 0x10\npush 0x1000\npushfq\npush 0x08\npush 0x100000", "iretq")
    assert.same({ type = "exception", vector = 13, error_code = 0x08, rip = rip }, exc(e))
    g:close()
  end)

  it("keeps IF when popfq clears it at IOPL 0", function()
    local g, cpu = guest("push 0\npopfq\npushfq\npop rbx\nmov rax, 60\nsyscall")
    assert.equals("syscall", cpu:run{ timeout_ms = 5000 }.type)
    assert.equals(0x202, cpu.rbx)
    g:close()
  end)

  it("sets the U bit of a page fault on an instruction fetch, reported at its target", function()
    local e, cpu, g = fault("mov rbx, 0x100000000000", "jmp rbx")
    assert.same({ type = "exception", vector = 14, error_code = 4, rip = 0x100000000000 }, exc(e))
    assert.same({ 0x100000000000, 0x100000000000 }, { cpu.rip, cpu:sregs().cr2 })
    g:close()
  end)
end)
