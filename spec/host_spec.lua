-- host_spec.lua - mv.host(): each answer of the probe agrees with what the
-- backend then does when asked directly (the core's own enter and debug,
-- without moonvisor.breakpoints' emulation), on whichever host runs it.
local mv = require "moonvisor"
local H = require "helpers"
local raw = require("moonvisor.host").raw

local h = mv.host(H.backend)

-- A real-mode guest whose IVT sends vector 3 to a hlt at 0x2000.
local function ivt_guest(code)
  local g, cpu = H.real(code)
  g:write(3 * 4, string.pack("<I2I2", 0x2000, 0))
  g:u8(0x2000, 0xf4)
  return g, cpu
end

describe("mv.host()", function()
  it("names the backend and the kind of host, and answers every question with a boolean", function()
    assert.equals(H.backend, h.backend)
    if H.kvm then
      assert.is_truthy(({ hardware = true, pvm = true, nested = true })[h.kind])
    else
      assert.equals("soft", h.kind)
    end
    for _, k in ipairs { "int3_exit", "int3_idt", "hw_breakpoints", "step_hlt", "paging_without_long_mode", "dirty_exact" } do
      assert.equals("boolean", type(h[k]), k)
    end
    assert.is_number(h.probe_ms)
  end)

  it("probes once per process and backend", function()
    assert.equals(h, mv.host(H.backend))
  end)

  it("refuses a backend it does not know", function()
    assert.has_error(function() mv.host("xen") end, 'mv.host: backend must be "kvm" or "soft", got xen')
  end)

  it("int3_exit: int3 with breakpoints on is a debug exit exactly when it says so", function()
    local g, cpu = ivt_guest("int3\nhlt")
    raw.debug(cpu, { breakpoints = true })
    local e = raw.enter(cpu, { timeout_ms = 5000 })
    assert.equals(h.int3_exit, e.type == "debug" and e.exception == 3, e.type)
    if h.int3_exit then assert.equals(0x1000, e.rip) end
  end)

  it("hw_breakpoints: an instruction breakpoint in DR0 fires exactly when it says so", function()
    local g, cpu = H.real("nop\nnop\nhlt")
    if H.kvm then
      raw.debug(cpu, { hw = { 0x1001 } })
      local e = raw.enter(cpu, { timeout_ms = 5000 })
      assert.equals(h.hw_breakpoints, e.type == "debug" and e.exception == 1 and cpu.rip == 0x1001, e.type)
    else
      assert.is_false(h.hw_breakpoints)
      assert.has_error(function() raw.debug(cpu, { hw = { 0x1001 } }) end,
        "vcpu:debug: the soft backend has no hardware breakpoints")
    end
  end)

  it("step_hlt: a single step over hlt is a hlt exit exactly when it says so", function()
    local g, cpu = H.real("hlt\nnop")
    raw.debug(cpu, { singlestep = true })
    local e = raw.enter(cpu, { timeout_ms = 5000 })
    assert.equals(h.step_hlt, e.type == "hlt", e.type)
  end)

  it("paging_without_long_mode: 32-bit paging is applied, or refused with an error naming CR0.PG", function()
    local g, cpu = H.moded("protected", "hlt")
    local ok, err = pcall(cpu.write_sregs, cpu, { cr0 = cpu:sregs().cr0 | mv.x86.CR0.PG, cr3 = 0x100000 })
    assert.equals(h.paging_without_long_mode, ok, err)
    if ok then
      assert.equals(mv.x86.CR0.PG, cpu:sregs().cr0 & mv.x86.CR0.PG)
    else
      assert.matches("vcpu:write_sregs: the host did not apply cr0.PG = 1", err, 1, true)
    end
  end)

  it("dirty_exact: a page the guest only ran and read is left out of the dirty log exactly when it says so", function()
    local g = H.guest()
    g:map(0, mv.vmo(0x10000), { log_dirty = true })
    g:write(0x1000, H.asm("mov al, [0x3000]\nmov byte [0x5000], 1\nhlt"))
    local cpu = g:vcpu{ entry = 0x1000 }
    g:dirty_pages(0)
    assert.equals("hlt", cpu:enter{ timeout_ms = 5000 }.type)
    assert.same(h.dirty_exact and { 0x5000 } or { 0x1000, 0x3000, 0x5000 }, g:dirty_pages(0))
  end)

  it("int3_idt: where int3 is not intercepted, ring-0 int3 in mode long reaches the stubs exactly when it says so", function()
    local g, cpu = H.moded("long", "int3\nhlt")
    if h.int3_exit then
      assert.is_false(h.int3_idt)   -- not asked: the host stops at int3 itself
    else
      local e = raw.enter(cpu, { timeout_ms = 5000 })
      local x = mv.stubs.take(cpu, e)
      assert.equals(h.int3_idt, x ~= nil and x.vector == 3, e.type)
    end
  end)
end)
