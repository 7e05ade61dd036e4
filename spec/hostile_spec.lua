-- hostile_spec.lua - guests that misbehave on purpose: every exit ends in
-- an exit description and the objects stay usable or closable.
local mv = require "moonvisor"
local H = require "helpers"

describe("a hostile guest", function()
  it("that writes every port 0-0xFFFF is seen port by port", function()
    local g, cpu = H.real([[
      xor dx, dx
      l: out dx, al
      inc dx
      jnz l
      hlt]])
    local seen, n = {}, 0
    g:trap("io", 0, 0x10000, function(e) if not seen[e.port] then n = n + 1 end; seen[e.port] = true end)
    assert.equals("hlt", cpu:run{ timeout_ms = 60000 }.type)
    assert.equals(0x10000, n)
  end)

  it("that hammers unmapped MMIO gets all-ones and unclaimed exits", function()
    local g, cpu = H.real([[
      mov ax, 0x8000
      mov ds, ax
      xor si, si
      l: mov eax, [si]
      mov [si], eax
      add si, 0x1000
      jnz l
      hlt]])
    local exits = 0
    local e
    repeat
      e = cpu:run{ timeout_ms = 10000 }
      if e.type == "mem" then exits = exits + 1 end
    until e.type ~= "mem"
    assert.equals("hlt", e.type)
    assert.equals(32, exits)   -- 16 pages, a read and a write each
    assert.equals(0xffffffff, cpu.rax & 0xffffffff)
  end)

  it("that triple-faults ends in an exit and the guest can be closed", function()
    -- long mode without an IDT (no exception stubs): #UD cannot be delivered,
    -- nor the #GP and #DF after it.  (Real mode would do on hardware, but
    -- kvm-pvm ignores the IVT limit there.)
    local g = H.guest()
    g:map(0, mv.vmo(0x200000))
    g:write(0x1000, H.asm("ud2", 64))
    local cpu = g:vcpu{ entry = 0x1000, mode = "long", exceptions = false }
    local e = cpu:run{ timeout_ms = 5000 }
    if H.kvm then
      assert.equals("shutdown", e.type)
    else
      assert.equals("exception", e.type)   -- the soft backend does not deliver exceptions
      assert.equals(6, e.vector)
    end
    g:close()
  end)

  it("that executes an invalid opcode ends in an exit, then resumes elsewhere", function()
    local g, cpu = H.real([[
      mov word [6*4], ud_handler
      mov word [6*4+2], 0
      mov sp, 0x8000
      ud2
      ud_handler: out 0x99, al
      fine: mov ax, 9
      hlt]])
    local e = cpu:run{ timeout_ms = 5000 }
    if H.kvm then
      assert.same({ type = "io", port = 0x99, size = 1, write = true, data = e.data }, e)   -- #UD went through the IVT
    else
      assert.equals("exception", e.type)
      assert.equals(6, e.vector)
      assert.equals(0x100f, e.rip)
    end
    cpu.rip = 0x1013
    assert.equals("hlt", cpu:run().type)
    assert.equals(9, cpu.rax & 0xffff)
  end)

  it("that loops forever is stopped by a timeout and can be resumed", function()
    local g, cpu = H.real("l: inc ax\njmp l")
    assert.equals("timeout", cpu:run{ timeout_ms = 20 }.type)
    local ax = cpu.rax
    assert.equals("timeout", cpu:run{ timeout_ms = 20 }.type)
    assert.is_true(cpu.rax ~= ax)   -- it ran on from where it stopped
  end)

  it("that rewrites its own page tables into garbage ends in an exit and can be restored", function()
    local mv = require "moonvisor"
    local g = H.guest()
    g:map(0, mv.vmo(0x200000))
    -- the tables sit at 0x100000 (PML4 at +0x1000): scribble over all of them
    g:write(0x1000, H.asm([[
      mov rdi, 0x101000
      mov rcx, 6 * 512
      mov rax, 0xdeadbeefcafef00d
      rep stosq
      mov rbx, [0x5000]   ; any access now walks garbage
      hlt]], 64))
    local cpu = g:vcpu{ entry = 0x1000, mode = "long", tables = 0x100000 }
    local s = g:snapshot()
    local e = cpu:run{ timeout_ms = 5000 }
    assert.is_true(e.type == "exception" or e.type == "shutdown" or e.type == "internal_error"
                   or e.type == "mem", "got " .. e.type)
    g:restore(s)
    g:write(0x1000, H.asm("mov rax, 7\nhlt", 64))
    assert.equals("hlt", cpu:run{ timeout_ms = 5000 }.type)
    assert.equals(7, cpu.rax)
    g:close()
  end)

  it("whose handler errors leaves the VCPU usable", function()
    local g, cpu = H.real("l: out 0x80, al\ninc bx\ncmp bx, 3\njne l\nhlt")
    g:trap("io", 0x80, 1, function() error({ code = 1 }) end)
    for _ = 1, 3 do
      local ok, err = pcall(cpu.run, cpu)
      assert.is_false(ok)
      assert.matches("error object is a table value", err)
    end
    assert.equals("hlt", cpu:run().type)
  end)
end)
