-- once_spec.lua - once-breakpoints (cpu:once_breakpoints, cpu:arm_breakpoints):
-- on the soft backend a run stops before the first instruction at an armed
-- address, once per arming, with nothing written to guest memory; kvm says
-- it has none.
local mv = require "moonvisor"
local H = require "helpers"

local loop = [[
  mov ebx, 3
top:
  dec ebx                 ; 0x1005
  jnz top
  mov eax, 7              ; 0x1009
  mov eax, 60             ; 0x100e
  syscall]]

-- The guest: code at 0x1000, 2 MiB of RAM, a VCPU in `mode` (a stack for
-- mode user, which needs one).
local function guest(mode, source)
  local g = H.guest()
  g:map(0, mv.vmo(0x200000))
  g:write(0x1000, H.asm(source, 64))
  return g, g:vcpu{ entry = 0x1000, mode = mode, stack = 0x8000 }
end

local function stops(cpu, n)
  local out = {}
  for _ = 1, n do
    local e = cpu:run{ timeout_ms = 2000 }
    out[#out + 1] = e.type == "debug" and ("%d@0x%x"):format(e.exception, e.rip) or e.type
    if e.type ~= "debug" then break end
  end
  return table.concat(out, " ")
end

describe("once-breakpoints", function()
  if H.kvm then
    it("are refused by the kvm backend, which patches int3s instead", function()
      local g, cpu = guest("long", loop)
      local ok, err = pcall(cpu.once_breakpoints, cpu, { 0x1005 })
      assert.is_false(ok)
      assert.matches("vcpu:once_breakpoints: the kvm backend has none", err, 1, true)
      cpu:arm_breakpoints()   -- harmless without any
      g:close()
    end)
    return
  end

  for _, mode in ipairs{ "long", "user" } do
    it("stop once per arming before the instruction, in mode " .. mode, function()
      local g, cpu = guest(mode, loop)
      local before = g:read(0x1000, 16)
      cpu:once_breakpoints{ 0x1000, 0x1005, 0x1009 }
      local e = cpu:run{ timeout_ms = 2000 }
      assert.same({ "debug", 3, 0x1000 }, { e.type, e.exception, e.rip })
      assert.equals(0x1000, cpu.rip)
      -- the loop body stops the first time only; the instruction then runs
      assert.equals("3@0x1005 3@0x1009 syscall", stops(cpu, 5))
      assert.equals(60, cpu.rax)
      assert.equals(0, cpu.rbx)
      assert.equals(before, g:read(0x1000, 16), "guest memory is untouched")
      -- armed again: the same stops
      cpu.rip = 0x1000
      cpu:arm_breakpoints()
      assert.equals("3@0x1000 3@0x1005 3@0x1009 syscall", stops(cpu, 5))
      -- not armed: none
      cpu.rip = 0x1000
      assert.equals("syscall", stops(cpu, 5))
      -- removed: none after a rearm either
      cpu:once_breakpoints()
      cpu:arm_breakpoints()
      cpu.rip = 0x1000
      assert.equals("syscall", stops(cpu, 5))
      g:close()
    end)
  end

  it("survive snapshots and restores, and let int3 breakpoints work beside them", function()
    local g, cpu = guest("long", loop)
    cpu:once_breakpoints{ 0x1005 }
    local s = g:snapshot()
    assert.equals("3@0x1005 syscall", stops(cpu, 5))
    g:restore(s)
    cpu:arm_breakpoints()
    g:u8(0x1009, 0xcc)
    cpu:debug{ breakpoints = true }
    assert.equals("3@0x1005 3@0x1009", stops(cpu, 2))
    g:close()
  end)

  it("end a spinning run at its timeout like any run, and stop again once rearmed", function()
    local g, cpu = guest("long", "spin: jmp spin")
    cpu:once_breakpoints{ 0x1000 }
    assert.equals("3@0x1000", stops(cpu, 1))
    assert.equals("timeout", cpu:run{ timeout_ms = 20 }.type)
    cpu:arm_breakpoints()
    assert.equals("3@0x1000", stops(cpu, 1))
    g:close()
  end)

  it("name the call and the value when given something else", function()
    local g, cpu = guest("long", loop)
    assert.matches("vcpu:once_breakpoints: addresses must be a table, got string",
      select(2, pcall(cpu.once_breakpoints, cpu, "x")), 1, true)
    assert.matches("vcpu:once_breakpoints: addresses[2] must be an integer, got string",
      select(2, pcall(cpu.once_breakpoints, cpu, { 1, "x" })), 1, true)
    assert.matches("vcpu:once_breakpoints: address 0xffffffffffffffff cannot be one",
      select(2, pcall(cpu.once_breakpoints, cpu, { -1 })), 1, true)
    cpu:close()
    assert.matches("closed", select(2, pcall(cpu.arm_breakpoints, cpu)))
    g:close()
  end)
end)
