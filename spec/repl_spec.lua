-- repl_spec.lua - the interactive REPL as a user sees it, driven through
-- tmux: completion, history across sessions, breakpoints, step, dis,
-- Ctrl-C on a spinning guest, errors that leave the REPL running.
local H = require "helpers"

local exe = os.getenv("MOONVISOR_EXE") or "build/moonvisor"
local count = 0

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  p:close()
  return out
end

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function monotonic()
  local p = io.popen("date +%s.%N")
  local t = tonumber(p:read("a"))
  p:close()
  return t
end

-- A REPL in a detached tmux session on a private server.
local Session = {}
Session.__index = Session

local function start(args, history)
  count = count + 1
  local s = setmetatable({ sock = ("mvtest-%d-%d"):format(H.pid(), count) }, Session)
  local cmd = ("MOONVISOR_BACKEND=%s MOONVISOR_HISTORY=%s LUA_PATH=%s %s %s"):format(
    H.backend, q(history), q("spec/?.lua;;"), exe, args or "")
  sh(("tmux -L %s new-session -d -x 200 -y 50 -c %s %s"):format(s.sock, q(os.getenv("PWD") or "."), q(cmd)))
  s:wait("moonvisor>")
  return s
end

function Session:keys(...)   -- key names: Enter, Tab, C-c, Up ...
  sh(("tmux -L %s send-keys %s"):format(self.sock, table.concat({ ... }, " ")))
end

function Session:type(text) sh(("tmux -L %s send-keys -l %s"):format(self.sock, q(text))) end

function Session:line(text)
  self:type(text)
  self:keys("Enter")
end

function Session:screen() return sh(("tmux -L %s capture-pane -p"):format(self.sock)) end

-- Polls the screen until it holds text (plain; capture-pane drops
-- trailing spaces) after the text "after", for up to 5 s.
function Session:wait(text, after)
  local deadline = monotonic() + 5
  repeat
    local screen = self:screen()
    local at = screen:find(text, after and (screen:find(after, 1, true) or #screen) or 1, true)
    if at then return screen end
    sh("sleep 0.05")
  until monotonic() > deadline
  error(("no %q on the screen:\n%s"):format(text, self:screen()), 2)
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
