-- cpu_state_spec.lua - CPU state beyond the general registers: FPU/SSE,
-- MSRs, CPUID overrides, and g:irq's refusal without an irqchip.
local mv = require "moonvisor"
local H = require "helpers"

describe("cpu:fpu() and cpu:write_fpu()", function()
  it("round-trip control words, x87 registers and XMM registers the guest then uses", function()
    local g, cpu = H.moded("long", [[
      movq rax, xmm1        ; what the host put in xmm1
      fld tword [rel ten]   ; pushes 10.0: ST0 for the host to read
      hlt
      ten: dt 10.0]])
    local f = cpu:fpu()
    assert.equals(8, #f.st)
    assert.equals(16, #f.xmm)
    cpu:write_fpu{ fcw = 0x37f, mxcsr = 0x1f80, xmm = { [2] = string.pack("<I8I8", 0x1122334455667788, 0) } }
    assert.equals("hlt", cpu:run{ timeout_ms = 5000 }.type)
    assert.equals(0x1122334455667788, cpu.rax)
    f = cpu:fpu()
    assert.equals(0x37f, f.fcw)
    assert.equals(0x1f80, f.mxcsr)
    assert.equals(string.pack("<I8I2", 0xa000000000000000, 0x4002), f.st[1])   -- 10.0 as 80 bits
  end)

  it("rejects malformed values", function()
    local g, cpu = H.moded("long", "hlt")
    assert.has_error(function() cpu:write_fpu{ st = { "short" } } end,
      "vcpu:write_fpu: st[1] must be a string of 10 bytes")
    assert.has_error(function() cpu:write_fpu{ fcw = 0x10000 } end, "vcpu:write_fpu: fcw = 65536 is out of range")
  end)
end)

describe("cpu:msr()", function()
  it("reads and writes model-specific registers", function()
    local g, cpu = H.moded("long", "hlt")
    cpu:msr(0xc0000102, 0x123456789a)          -- KERNEL_GS_BASE
    assert.equals(0x123456789a, cpu:msr(0xc0000102))
    assert.equals(0x400, cpu:msr(0xc0000080) & 0x400)   -- EFER.LMA
  end)
end)

describe("cpu:cpuid_set()", function()
  it("changes what CPUID answers for a leaf", function()
    local g, cpu = H.moded("long", [[
      mov eax, 0x40000000
      xor ecx, ecx
      cpuid
      hlt]])
    cpu:cpuid_set(0x40000000, 0, { eax = 0x40000001, ebx = 0x6e6f6f4d, ecx = 0x6f736976, edx = 0x72 })
    assert.equals("hlt", cpu:run{ timeout_ms = 5000 }.type)
    local r = cpu:read_state()
    assert.equals("Moonvisor", string.pack("<I4I4I1", r.rbx, r.rcx, r.rdx))
    assert.equals(0x40000001, r.rax)
  end)
end)

describe("guest:irq()", function()
  it("needs an in-kernel irqchip", function()
    local g = H.guest()
    assert.has_error(function() g:irq(4, 1) end,
      H.kvm and "guest:irq: create the guest with irqchip = true" or "guest:irq: the soft backend has no interrupt controller")
  end)
end)
