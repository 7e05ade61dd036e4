-- kvm_spec.lua - what only the kvm backend has: /dev/kvm itself, the
-- capability table, the in-kernel irqchip and ioeventfd doorbells.  Tagged
-- #kvm: `make test` runs these in the kvm pass, where a missing /dev/kvm
-- makes them fail with the core's message.
local mv = require "moonvisor"
local H = require "helpers"

describe("KVM #kvm", function()
  it("speaks API version 12", function()
    assert.equals(12, mv.kvm_api_version())
  end)

  it("reports every known capability by name", function()
    local caps = mv.caps()
    assert.is_true(caps.user_memory > 0)
    assert.is_true(caps.irqchip > 0)
    assert.is_number(caps.immediate_exit)
    assert.is_number(caps.readonly_mem)
    local n = 0
    for _ in pairs(caps) do n = n + 1 end
    assert.is_true(n > 150)
  end)

  it("creates a guest with the in-kernel irqchip and PIT", function()
    local g = mv.guest{ backend = "kvm", irqchip = true }
    g:map(0, mv.vmo(0x10000))
    assert.equals("kvm", g:backend())
    g:close()
  end)

  it("delivers g:irq through the in-kernel PIC to a real-mode guest", function()
    local g = mv.guest{ backend = "kvm", irqchip = true }
    g:map(0, mv.vmo(0x10000))
    -- program the master PIC (vector base 0x20, only IRQ 4 unmasked), set
    -- the IVT entry of vector 0x24, enable interrupts and wait
    g:write(0x1000, H.asm([[
      mov word [0x24*4], isr
      mov word [0x24*4+2], 0
      mov sp, 0x8000
      mov al, 0x11
      out 0x20, al
      mov al, 0x20
      out 0x21, al
      mov al, 0x04
      out 0x21, al
      mov al, 0x01
      out 0x21, al
      mov al, 0xef
      out 0x21, al
      sti
      l: out 0x80, al
      jmp l
      isr: out 0x81, al
      out 0x82, al    ; unclaimed: ends the run (with the in-kernel irqchip hlt never exits)
      hlt]]))
    local cpu = g:vcpu{ entry = 0x1000 }
    local n = 0
    g:trap("io", 0x80, 1, function() n = n + 1; if n == 3 then g:irq(4, 1) end end)
    local got
    g:trap("io", 0x81, 1, function() got = true end)
    local e = cpu:run{ timeout_ms = 5000 }
    assert.same({ "io", 0x82 }, { e.type, e.port })
    assert.is_true(got)
  end)

  it("refuses mappings over the TSS and identity-map pages", function()
    local g = mv.guest{ backend = "kvm" }
    assert.has_error(function() g:map(0xfff00000, mv.vmo(0x100000)) end,
      "guest:map: range 0xfff00000+0x100000 overlaps 0xfffbc000-0xfffc0000, reserved for KVM's TSS and identity map")
  end)

  it("delivers ioeventfd doorbells without leaving the kernel", function()
    local g, cpu = H.real([[
      mov ax, 0x5000
      mov ds, ax
      mov cx, 1000
      l: mov dword [0], 1
      loop l
      hlt]], { backend = "kvm" })
    local n = 0
    g:trap("bell", 0x50000, 4, function() n = n + 1 end)
    assert.equals("hlt", cpu:enter().type)
    assert.equals(1000, n)
  end)
end)
