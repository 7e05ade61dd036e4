-- user_spec.lua - mode = "user": 64-bit code at CPL3 whose exceptions and
-- system calls come back as exits, after which the sandbox goes on.
local mv = require "moonvisor"
local H = require "helpers"

local function sandbox(source)
  local g = H.guest()
  g:map(0, mv.vmo(0x400000))
  g:write(0x100000, H.asm("org 0x100000\n" .. source, 64))
  return g, g:vcpu{ entry = 0x100000, mode = "user", stack = 0x200000 }
end

describe('mode = "user"', function()
  it("runs at CPL3 and makes system calls the script answers", function()
    local g, cpu = sandbox([[
      mov rax, cs
      mov r12, rax          ; CS: its low two bits are the CPL
      mov rax, 1            ; "syscall 1": the host doubles rdi
      mov rdi, 21
      syscall
      mov r13, rax
      mov rax, 60           ; "exit"
      syscall]])
    local e = cpu:run{ timeout_ms = 5000 }
    assert.equals("syscall", e.type)
    assert.equals(1, cpu.rax)
    assert.equals(3, cpu.r12 & 3)
    cpu.rax = cpu.rdi * 2
    e = cpu:run{ timeout_ms = 5000 }
    assert.equals("syscall", e.type)
    assert.equals(60, cpu.rax)
    assert.equals(42, cpu.r13)
  end)

  it("reports a faulting instruction as an exception, and the next call works", function()
    local g, cpu = sandbox("hlt\ngood: mov rax, 60\nsyscall")   -- hlt at CPL3: #GP(0)
    local e = cpu:run{ timeout_ms = 5000 }
    assert.equals("exception", e.type)
    assert.equals(13, e.vector)
    assert.equals(0x100000, e.rip)
    assert.equals(0, e.error_code)
    cpu.rip = 0x100001
    assert.equals("syscall", cpu:run{ timeout_ms = 5000 }.type)
  end)

  it("reports invalid opcodes and page faults as exceptions", function()
    local g, cpu = sandbox("ud2")
    local e = cpu:run{ timeout_ms = 5000 }
    assert.same({ "exception", 6, 0x100000 }, { e.type, e.vector, e.rip })
    g, cpu = sandbox("mov rbx, 0x100000000000\nmov rax, [rbx]   ; not in the page tables")
    e = cpu:run{ timeout_ms = 5000 }
    assert.same({ "exception", 14 }, { e.type, e.vector })
  end)

  it("keeps ring 3 out of its system area (GDT, tables, stubs): a write there is a page fault", function()
    local g, cpu = sandbox("mov byte [rdi], 0x90\nmov rax, [rdi]")
    local stubs_at = mv.stubs.cpus[cpu].report - (32 * 16 + 7)
    cpu.rdi = stubs_at
    local e = cpu:run{ timeout_ms = 5000 }
    assert.same({ "exception", 14, 7, 0x100000 }, { e.type, e.vector, e.error_code, e.rip })   -- present, write, user
    assert.equals(stubs_at, cpu:sregs().cr2)
    cpu.rip = 0x100003   -- past the write: the read faults too
    e = cpu:run{ timeout_ms = 5000 }
    assert.same({ "exception", 14, 5 }, { e.type, e.vector, e.error_code })   -- present, read, user
    assert.equals("\x6a\x00", g:read(stubs_at, 2))   -- the #DE stub's push 0, as written
  end)

  -- kvm-pvm's SYSCALL moves RIP to the entry but keeps ring 3's CS, so the
  -- entry faults in ring 3 with IF clear, which user.translate takes for the
  -- system call it is.  A jump there from ring 3 (IF set) stays a fault.
  it("reports ring 3's jump to its syscall entry as the page fault there, not as a system call", function()
    local g, cpu = sandbox("jmp rdi")
    local entry = cpu:msr(0xc0000082)   -- LSTAR
    cpu.rdi = entry
    local e = cpu:run{ timeout_ms = 5000 }
    assert.same({ "exception", 14, entry }, { e.type, e.vector, e.rip })
    assert.equals(entry, cpu:sregs().cr2)
  end)

  it("keeps compute-heavy code in ring 3 (a loop of a million iterations)", function()
    local g, cpu = sandbox([[
      mov rcx, 1000000
      xor rax, rax
      l: add rax, rcx
      loop l
      mov rbx, rax
      mov rax, 60
      syscall]])
    assert.equals("syscall", cpu:run{ timeout_ms = 60000 }.type)
    assert.equals(1000000 * 1000001 // 2, cpu.rbx)
  end)
end)
