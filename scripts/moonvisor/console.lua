-- console.lua - a guest's serial console, for people and for scripts.
--
--   local console = require "moonvisor.console"
--   local c = console.new{ uart = u, step = function(ms) ... end }
--
-- `uart` is a moonvisor.dev.uart model; `step(ms)` runs the machine for at
-- most about ms milliseconds and returns nil while it goes on, or a result
-- (anything but nil: an exit status, a reason) when it ended.  The console
-- takes the UART's output over from then on: it keeps it for expect, shows
-- it on the terminal during interact, and passes it to opts.output (a
-- function of the bytes) when given.  It keeps the last opts.keep bytes
-- (1 MiB by default) of that output, so a guest that floods its console
-- costs bounded memory.
--
--   c:expect(pattern[, timeout_ms]) -> the text up to and including the first
--       match of the Lua pattern in what the guest printed since the last
--       expect; error (naming the pattern, with the tail of the output) on a
--       timeout (default 30 s) or when the machine ends first
--   c:wait([timeout_ms]) runs the machine until it ends: its result; error
--                        on a timeout (default 30 s)
--   c:send(text)         input for the guest (through the UART's flow control)
--   c:sendline(text)     text .. "\n"
--   c:output()           what the guest printed through the console so far
--                        (the last opts.keep bytes of it, at least)
--   c:interact([opts])   connects the host terminal (raw mode) to the guest
--       both ways until the machine ends (returns its result) or the escape:
--       Ctrl-A x quits (returns nil, "quit"), Ctrl-A Ctrl-A sends a Ctrl-A,
--       Ctrl-A h lists the keys.  The terminal is back in cooked mode on every
--       way out, errors included.  opts: { input = fd 0, echo = a file
--       (default: fd 1 through term:write) }
local core = require "moonvisor.core"

local M = {}
local Console = {}
Console.__index = Console

local CTRL_A = "\1"
M.KEEP = 1 << 20
M.ESCAPE_HELP = "\r\n[moonvisor console: Ctrl-A x quit, Ctrl-A Ctrl-A send Ctrl-A, Ctrl-A h this help]\r\n"

function M.new(opts)
  if type(opts) ~= "table" then error("console.new: options must be a table, got " .. type(opts), 2) end
  local uart, step = opts.uart, opts.step
  if type(uart) ~= "table" or type(uart.feed) ~= "function" then
    error("console.new: uart must be a moonvisor.dev.uart model, got " .. type(uart), 2)
  end
  if type(step) ~= "function" then error("console.new: step must be a function, got " .. type(step), 2) end
  if opts.output ~= nil and type(opts.output) ~= "function" then
    error("console.new: output must be a function, got " .. type(opts.output), 2)
  end
  local keep = opts.keep or M.KEEP
  if math.type(keep) ~= "integer" or keep < 1 then error("console.new: keep must be a positive integer, got " .. tostring(keep), 2) end
  local self = setmetatable({ uart = uart, step = step, log = {}, seen = 0, text = nil, ended = nil,
                              len = 0, keep = keep }, Console)
  local also = opts.output
  uart:flush()
  uart.out = function(bytes)
    self.log[#self.log + 1] = bytes
    self.text = nil
    self.len = self.len + #bytes
    if self.len > 2 * self.keep then self:_trim() end
    if self.echo then self.echo(bytes) end
    if also then also(bytes) end
  end
  return self
end

-- Drops all but the last `keep` bytes of the output (expect's position moves with them).
function Console:_trim()
  local text = table.concat(self.log)
  local drop = #text - self.keep
  text = text:sub(drop + 1)
  self.log, self.text, self.len = { text }, text, #text
  self.seen = math.max(0, self.seen - drop)
end

function Console:output()
  if not self.text then
    self.text = table.concat(self.log)
    self.log = { self.text }
  end
  return self.text
end

-- Runs the machine one slice; remembers how it ended.
function Console:_step(ms)
  if self.ended ~= nil then return self.ended end
  local r = self.step(ms)
  if r ~= nil then self.ended = r end
  return r
end

function Console:expect(pattern, timeout_ms)
  if type(pattern) ~= "string" then error("console:expect: pattern must be a string, got " .. type(pattern), 2) end
  timeout_ms = timeout_ms or 30000
  if math.type(timeout_ms) ~= "integer" or timeout_ms < 0 then
    error("console:expect: timeout_ms must be a non-negative integer, got " .. tostring(timeout_ms), 2)
  end
  local deadline = core.clock() + timeout_ms / 1000
  while true do
    local text = self:output()
    local _, last = text:find(pattern, self.seen + 1)
    if last then
      local got = text:sub(self.seen + 1, last)
      self.seen = last
      return got
    end
    local why
    if self.ended ~= nil then
      why = "the machine ended (" .. M.describe(self.ended) .. ")"
    elseif core.clock() >= deadline then
      why = ("no match within %d ms"):format(timeout_ms)
    end
    if why then
      local tail = text:sub(math.max(self.seen + 1, #text - 400))
      error(("console:expect: %q: %s; the output since the last match ends with:\n%s"):format(pattern, why, tail), 2)
    end
    self:_step(math.max(1, math.min(50, math.floor((deadline - core.clock()) * 1000))))
  end
end

-- A step's result as text: a table's reason (moonvisor.pc's results), or tostring.
function M.describe(r)
  if type(r) == "table" and r.reason then return tostring(r.reason) end
  return tostring(r)
end

function Console:wait(timeout_ms)
  timeout_ms = timeout_ms or 30000
  if math.type(timeout_ms) ~= "integer" or timeout_ms < 0 then
    error("console:wait: timeout_ms must be a non-negative integer, got " .. tostring(timeout_ms), 2)
  end
  local deadline = core.clock() + timeout_ms / 1000
  while self.ended == nil do
    if core.clock() >= deadline then
      local text = self:output()
      error(("console:wait: the machine did not end within %d ms; the output ends with:\n%s"):format(
        timeout_ms, text:sub(math.max(1, #text - 400))), 2)
    end
    self:_step(math.max(1, math.min(50, math.floor((deadline - core.clock()) * 1000))))
  end
  return self.ended
end

function Console:send(text)
  if type(text) ~= "string" then error("console:send: expected a string, got " .. type(text), 2) end
  self.uart:feed(text)
end

function Console:sendline(text)
  if type(text) ~= "string" then error("console:sendline: expected a string, got " .. type(text), 2) end
  self.uart:feed(text .. "\n")
end

-- Splits what the terminal gave into input for the guest and the console's
-- own commands.  Returns the guest's bytes and "quit" when asked to.
function Console:_keys(bytes)
  local out, i = {}, 1
  while i <= #bytes do
    local ch = bytes:sub(i, i)
    if self.escape then
      self.escape = false
      if ch == "x" or ch == "X" then return table.concat(out), "quit"
      elseif ch == CTRL_A then out[#out + 1] = CTRL_A
      elseif ch == "h" or ch == "?" then self.echo(M.ESCAPE_HELP)
      end   -- anything else after Ctrl-A is dropped, as in QEMU
    elseif ch == CTRL_A then
      self.escape = true
    else
      out[#out + 1] = ch
    end
    i = i + 1
  end
  return table.concat(out)
end

function Console:interact(opts)
  opts = opts or {}
  local fd = opts.input or 0
  local term <close> = core.term_raw(fd)
  local stdout = opts.echo
  io.stdout:flush()
  -- term:write: a VCPU timeout's signal must not cut a write to a slow terminal short
  local echo = stdout and function(bytes) stdout:write(bytes); stdout:flush() end
    or function(bytes) term:write(bytes) end
  self.echo = echo
  local ok, result, how = pcall(function()
    while true do
      local bytes = term:read(4096, 0)
      if bytes == "" then bytes = nil end     -- end of input: keep running the guest
      if bytes then
        local keys, cmd = self:_keys(bytes)
        if #keys > 0 then self.uart:feed(keys) end
        if cmd == "quit" then return nil, "quit" end
      end
      local r = self:_step(20)
      if r ~= nil then return r end
    end
  end)
  self.echo = nil
  if not ok then error(result, 0) end
  return result, how
end

return M
