-- breakpoints_spec.lua - int3 breakpoints stop at the right rip with a
-- debug exit through every mechanism this host can use (moonvisor.breakpoints):
-- "int3" where the host intercepts it, "idt" through moonvisor's exception
-- stubs, "step" by single steps; a step over hlt is a hlt exit everywhere.
local mv = require "moonvisor"
local H = require "helpers"
local bp = require "moonvisor.breakpoints"

local h = mv.host(H.backend)

-- Guests with an int3 patched over the instruction at label `target`.
local function user_guest()
  local g = H.guest()
  g:map(0, mv.vmo(0x400000))
  g:write(0x100000, H.asm("org 0x100000\nmov eax, 1\nmov ebx, 2\ntarget: mov edx, 3\nmov rax, 60\nsyscall", 64))
  return g, g:vcpu{ entry = 0x100000, mode = "user", stack = 0x200000 }, 0x10000a
end

local function long_guest()
  local g, cpu = H.moded("long", "mov eax, 1\nmov ebx, 2\ntarget: mov edx, 3\nhlt")
  return g, cpu, 0x100a
end

local function real_guest()
  local g, cpu = H.real("mov ax, 1\nmov bx, 2\ntarget: mov dx, 3\nhlt")
  return g, cpu, 0x1006
end

-- Sets the breakpoint, runs to it, checks the stop, then takes it out and
-- runs on to the end with the original instruction.
local function stops_at(g, cpu, at, via)
  local byte = g:u8(at)
  g:u8(at, 0xcc)
  cpu:debug{ breakpoints = true, via = via }
  local e = cpu:enter{ timeout_ms = 20000 }
  assert.same({ "debug", 3, at }, { e.type, e.exception, e.rip })
  assert.equals(at, cpu.rip)
  assert.equals(1, cpu.rax & 0xffff)
  assert.equals(2, cpu.rbx & 0xffff)
  g:u8(at, byte)
  e = cpu:run{ timeout_ms = 20000 }
  assert.equals(3, cpu.rdx & 0xffff)
  cpu:debug()
  return e
end

describe("breakpoints", function()
  it("pick a mechanism from the probe", function()
    local _, ucpu = user_guest()
    local _, lcpu = long_guest()
    local _, rcpu = real_guest()
    if h.int3_exit then
      for _, c in ipairs { ucpu, lcpu, rcpu } do assert.equals("int3", bp.mechanism(c)) end
    else
      assert.equals("idt", bp.mechanism(ucpu))
      assert.equals(h.int3_idt and "idt" or "step", bp.mechanism(lcpu))
      assert.equals("step", bp.mechanism(rcpu))
    end
  end)

  if h.int3_exit then
    it("stop through the host's own int3 exits", function()
      stops_at(real_guest())
      assert.equals("syscall", stops_at(user_guest()).type)
    end)
  end

  it("stop through the exception stubs' vector 3 at CPL3 (via idt)", function()
    local g, cpu, at = user_guest()
    assert.equals("syscall", stops_at(g, cpu, at, "idt").type)
  end)

  if h.int3_exit or h.int3_idt then
    it("stop through the exception stubs' vector 3 at ring 0 in mode long (via idt)", function()
      local g, cpu, at = long_guest()
      assert.equals("hlt", stops_at(g, cpu, at, "idt").type)
    end)
  end

  it("stop by single steps in real mode, mode long and mode user (via step)", function()
    local g, cpu, at = real_guest()
    assert.equals("hlt", stops_at(g, cpu, at, "step").type)
    g, cpu, at = long_guest()
    assert.equals("hlt", stops_at(g, cpu, at, "step").type)
    g, cpu, at = user_guest()
    assert.equals("syscall", stops_at(g, cpu, at, "step").type)
  end)

  it("by single steps end a spinning guest at its timeout and stop at a kick", function()
    local g, cpu = H.real("l: jmp l")
    cpu:debug{ breakpoints = true, via = "step" }
    assert.equals("timeout", cpu:enter{ timeout_ms = 100 }.type)
    cpu:kick()
    assert.equals("kick", cpu:enter().type)
  end)

  it("keep the settings cpu:debug returns, via included", function()
    local g, cpu = H.real("hlt")
    cpu:debug{ breakpoints = true, via = "step" }
    local old = cpu:debug{ singlestep = true }
    assert.same({ singlestep = false, breakpoints = true, via = "step" }, old)
    assert.has_error(function() cpu:debug{ via = "magic" } end,
      'vcpu:debug: via must be "int3", "idt" or "step", got magic')
  end)
end)

describe("a single step over hlt", function()
  it("is a hlt exit on every host", function()
    local g, cpu = H.real("hlt\nnop")
    cpu:debug{ singlestep = true }
    assert.equals("hlt", cpu:enter{ timeout_ms = 5000 }.type)
  end)
end)
