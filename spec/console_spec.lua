-- console_spec.lua - moonvisor.console: expect/send on a guest's UART, the
-- escape keys, and the interactive console in a real terminal (tmux), which
-- must leave the terminal in cooked mode however it ends.
local H = require "helpers"
local guest = require "console_guest"
local tmux = require "tmux"

describe("console:expect() and send()", function()
  it("waits for the prompt, sends a line and reads the answer", function()
    local c = guest.new()
    assert.equals("$ ", c:expect("%$ ", 10000))
    c:sendline("hello")
    assert.equals("HELLO\n$ ", c:expect("%$ ", 10000))
    c:send("abc\n")
    assert.equals("ABC\n", c:expect("\n", 10000))
    assert.equals("$ HELLO\n$ ABC\n", c:output():sub(1, 14))
  end)

  it("errors on a timeout, naming the pattern and showing the output's tail", function()
    local c = guest.new()
    c:expect("%$ ", 10000)
    local ok, err = pcall(c.expect, c, "login:", 100)
    assert.is_false(ok)
    assert.matches('console:expect: "login:": no match within 100 ms', err, 1, true)
  end)

  it("errors when the machine ends first", function()
    local c = guest.new()
    c:expect("%$ ", 10000)
    c:send("!")
    local ok, err = pcall(c.expect, c, "never", 10000)
    assert.is_false(ok)
    assert.matches("the machine ended (port 0xf4)", err, 1, true)
  end)

  it("rejects bad arguments", function()
    local c = guest.new()
    assert.has_error(function() c:expect(42) end, "console:expect: pattern must be a string, got number")
    assert.has_error(function() c:send(nil) end, "console:send: expected a string, got nil")
    assert.has_error(function() require("moonvisor.console").new{ step = print } end,
      "console.new: uart must be a moonvisor.dev.uart model, got nil")
  end)
end)

describe("the console's escape keys", function()
  it("Ctrl-A x quits, Ctrl-A Ctrl-A sends one Ctrl-A, other bytes go to the guest", function()
    local c = guest.new()
    assert.same({ "ab", "quit" }, { c:_keys("ab\1xcd") })
    assert.same({ "\1z" }, { c:_keys("\1\1z") })
    assert.same({ "" }, { c:_keys("\1") })     -- an escape split across two reads
    assert.same({ "", "quit" }, { c:_keys("x") })
  end)
end)

describe("console:interact() (tmux)", function()
  local exe = os.getenv("MOONVISOR_EXE") or "build/moonvisor"
  local function start()
    local cmd = ("MOONVISOR_BACKEND=%s LUA_PATH=%s %s spec/console_guest.lua; stty -a | tr ' ' '\\n' | grep -x -e icanon -e -icanon; sleep 30"):format(
      H.backend, tmux.q("scripts/?.lua;scripts/?/init.lua;spec/?.lua;;"), exe)
    return tmux.start(cmd, "$")
  end

  it("connects the terminal both ways and quits on Ctrl-A x with the terminal restored", function()
    local s = start()
    finally(function() s:kill() end)
    s:type("ls /")
    s:keys("Enter")
    s:wait("LS /", nil, 15)
    s:keys("C-a", "x")
    local screen = s:wait("[console: quit]", nil, 15)
    s:wait("icanon", "[console: quit]", 15)
    assert.is_nil(s:screen():find("-icanon", 1, true))
    assert.matches("%$ LS /", screen)
  end)

  it("ends with the machine, and Ctrl-C goes to the guest, not to moonvisor", function()
    local s = start()
    finally(function() s:kill() end)
    s:keys("C-c")            -- a byte for the guest: echoed as ^C's code, the console goes on
    s:type("ok")
    s:wait("OK", nil, 15)
    s:type("!")
    s:wait("[console: port 0xf4]", nil, 15)
    s:wait("icanon", "[console: port 0xf4]", 15)
    assert.is_nil(s:screen():find("-icanon", 1, true))
  end)
end)

describe("console output bounds", function()
  it("keeps the last opts.keep bytes of a flood, and expect goes on past the trimmed part", function()
    local c = require("console_guest").new()
    c.keep = 8
    c:expect("%$ ", 10000)
    c.uart.out(string.rep("a", 20))
    assert.equals(string.rep("a", 8), c:output())
    c.uart.out("b$ ")
    assert.equals("b$ ", c:expect("%$ ", 1000):sub(-3))
  end)

  it("console:wait() returns how the machine ended", function()
    local c = require("console_guest").new()
    c:expect("%$ ", 10000)
    c:send("!")
    assert.equals("port 0xf4", c:wait(10000))
  end)
end)
