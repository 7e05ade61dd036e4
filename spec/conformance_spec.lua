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
