-- repl_spec.lua - the interactive REPL as a user sees it, driven through
-- tmux: completion, history across sessions, breakpoints, step, dis,
-- Ctrl-C on a spinning guest, errors that leave the REPL running.
local H = require "helpers"

local tmux = require "tmux"
local Session, sh, q = tmux.Session, tmux.sh, tmux.q

local exe = os.getenv("MOONVISOR_EXE") or "build/moonvisor"

-- A REPL in a detached tmux session.
local function start(args, history)
  local cmd = ("MOONVISOR_BACKEND=%s MOONVISOR_HISTORY=%s LUA_PATH=%s %s %s"):format(
    H.backend, q(history), q("spec/?.lua;;"), exe, args or "")
  return tmux.start(cmd, "moonvisor>")
end

-- Runs a statement and waits for the prompt after its output.
function Session:run(text, expect)
  local mark = ("--[[%d]]"):format(math.random(1e9))
  self:line(text .. " " .. mark)
  return self:wait(expect or "moonvisor>", mark)
end

function Session:kill() sh(("tmux -L %s kill-server"):format(self.sock)) end

-- A setup script for -i: a guest with a known snippet and a spinning one.
local function setup()
  local f = os.tmpname()
  local out = assert(io.open(f, "w"))
  out:write([[
H = require "helpers"
g, cpu = H.real("mov ax, 1\nmov bx, 2\nnop\nhlt")
g2, spin = H.real("jmp $")
]])
  out:close()
  return f
end

describe("the REPL (tmux)", function()
  local script, history
  before_each(function()
    script, history = setup(), os.tmpname()
  end)
  after_each(function()
    os.remove(script)
    os.remove(history)
  end)

  it("completes methods of userdata: cpu:re<TAB> -> cpu:read_state", function()
    local s = start("-i " .. script, history)
    finally(function() s:kill() end)
    s:type("cpu:re")
    s:keys("Tab")
    s:wait("cpu:read_state")
    s:type("()")
    s:keys("Enter")
    s:wait("rip = 0x1000")
  end)

  it("keeps history across sessions in MOONVISOR_HISTORY", function()
    local s = start("", history)
    s:run("marker = 6 * 7", "moonvisor>")
    s:keys("C-d")
    s:kill()
    local f = assert(io.open(history))
    assert.matches("marker = 6 %* 7", f:read("a"))
    f:close()
    s = start("", history)
    finally(function() s:kill() end)
    s:keys("Up")
    s:wait("marker = 6 * 7")
    s:keys("Enter")
    s:wait("marker = 6 * 7")
    s:run("marker", "\n42\n")
  end)

  it("stops at a breakpoint at the right rip, steps one instruction, disassembles", function()
    local s = start("-i " .. script, history)
    finally(function() s:kill() end)
    s:run("breakpoint(cpu, 0x1003)", "breakpoint 1 at 0x1003")
    s:run("cont(cpu)", "breakpoint 1 at 0x1003:  mov bx, 2")
    s:run("cpu.rip", "\n4099\n")
    s:run("step(cpu)", "0x1006:  nop")
    s:run("(\"%d,%d\"):format(cpu.rip, cpu.rbx)", "4102,2")
    local screen = s:run("dis(cpu, 0x1000, 4)", "hlt")
    assert.matches("0x1000:  b8 01 00%s+mov ax, 1", screen)
    assert.matches("%* 0x1003:  bb 02 00%s+mov bx, 2", screen)
    assert.matches("=>  0x1006:  90%s+nop", screen)
  end)

  it("Ctrl-C stops a spinning guest and the prompt comes back with the guest intact", function()
    local s = start("-i " .. script, history)
    finally(function() s:kill() end)
    local mark = "--[[spin]]"
    s:line("spin:run() " .. mark)
    sh("sleep 0.3")   -- let it spin
    assert.not_matches("kick", s:screen())
    s:keys("C-c")
    s:wait('type = "kick"', mark)
    s:wait("moonvisor>", 'type = "kick"')
    s:run("spin.rip", "\n4096\n")
    s:run("cont(spin, { timeout_ms = 50 })", "timeout at 0x1000:  jmp 0x1000")
  end)

  it("prints an error with a traceback and goes on with its state", function()
    local s = start("", history)
    finally(function() s:kill() end)
    s:run("kept = 5", "moonvisor>")
    s:run("error('boom')", "stack traceback:")
    s:run("kept + 1", "\n6\n")
    s:run("for i = 1, 2 do", ">>")
    s:run("  print('line' .. i) end", "line2")
  end)
end)
