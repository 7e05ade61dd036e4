-- moonvisor.dev.i8042: enough of the PC keyboard controller (8042) for a
-- kernel's probe and reset paths: port 0x60 (data) and 0x64 (status and
-- command), one io trap on each.
--
--   local kbc = require("moonvisor.dev.i8042").new(g, {
--     data_port = 0x60, cmd_port = 0x64,
--     on_reset = function(cause, cpu) end,   -- the guest pulsed the reset
--                     -- line: cause "0xfe" (a pulse command) or "0xd1"
--                     -- (output port bit 0 cleared); e.g. cpu:kick() to stop
--   })
--   kbc.resets, kbc.last_reset     how many resets, and the last cause
--   kbc:read(port) kbc:write(port, byte)   port access, as the guest's
--   kbc:stats() kbc:remove()
--
-- Model:
-- * Status (0x64 read): bit 0 output buffer full (a byte waits at 0x60),
--   bit 1 input buffer full (always 0: commands complete at once), bit 2
--   system flag (command byte bit 2, set by self-test), bit 3 last write was
--   a command, bit 4 keyboard not inhibited (1).
-- * 0x60 read: the next output byte, or 0 when there is none.
-- * Commands: 0x20 read command byte, 0x60 write command byte (next 0x60
--   write), 0xAA self-test (answers 0x55), 0xAB keyboard interface test
--   (0x00), 0xA7/0xA8 and 0xAD/0xAE disable/enable aux and keyboard
--   (command byte bits 5 and 4), 0xD0 read output port, 0xD1 write output
--   port (next 0x60 write; bit 0 clear resets, bit 1 is the A20 gate, in
--   kbc.a20), 0xF0-0xFF pulse output lines (even = reset line: 0xFE).
--   Others are ignored.
-- * Data written to 0x60 outside a command goes to the keyboard, which
--   answers 0xFA (ACK); 0xFF (reset) adds 0xAA, 0xEE (echo) answers 0xEE,
--   0xF2 (identify) adds 0xAB 0x83.  There are no key presses and no IRQ 1.
local M = {}
local Kbc = {}
Kbc.__index = Kbc
M.I8042 = Kbc

function M.new(g, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("i8042.new: options must be a table, got " .. type(opts), 2) end
  if opts.on_reset ~= nil and type(opts.on_reset) ~= "function" then
    error("i8042.new: on_reset must be a function", 2)
  end
  local self = setmetatable({
    data_port = opts.data_port or 0x60, cmd_port = opts.cmd_port or 0x64,
    on_reset = opts.on_reset,
    cmdbyte = 0x45,           -- translate, system flag, keyboard interrupt
    outport = 0x03,           -- reset line high, A20 on
    a20 = true,
    out = {},                 -- bytes waiting for the guest at 0x60
    pending = nil,            -- a command waiting for its data byte
    last_was_cmd = false,
    resets = 0, last_reset = nil,
    n_cmds = 0,
  }, Kbc)
  local handler = function(e, cpu)
    if e.write then self:write(e.port, e.data & 0xff, cpu) return end
    local v = self:read(e.port)
    if e.size > 1 then v = v | (((1 << (8 * (e.size - 1))) - 1) << 8) end   -- upper ports float
    return v
  end
  self.handler = handler
  self.traps = { g:trap("io", self.data_port, 1, handler), g:trap("io", self.cmd_port, 1, handler) }
  return self
end

function Kbc:_reset(cause, cpu)
  self.resets = self.resets + 1
  self.last_reset = cause
  if self.on_reset then self.on_reset(cause, cpu) end
end

function Kbc:_push(...)
  for _, b in ipairs{ ... } do self.out[#self.out + 1] = b end
end

function Kbc:status()
  return (#self.out > 0 and 0x01 or 0) | (self.cmdbyte & 0x04) | (self.last_was_cmd and 0x08 or 0) | 0x10
end

function Kbc:read(port)
  if port == self.cmd_port then return self:status() end
  if #self.out == 0 then return 0 end
  return table.remove(self.out, 1)
end

function Kbc:_command(c, cpu)
  self.n_cmds = self.n_cmds + 1
  if c == 0x20 then self:_push(self.cmdbyte)
  elseif c == 0x60 or c == 0xd1 then self.pending = c
  elseif c == 0xaa then self.cmdbyte = self.cmdbyte | 0x04; self:_push(0x55)
  elseif c == 0xab then self:_push(0x00)
  elseif c == 0xa7 then self.cmdbyte = self.cmdbyte | 0x20
  elseif c == 0xa8 then self.cmdbyte = self.cmdbyte & ~0x20
  elseif c == 0xad then self.cmdbyte = self.cmdbyte | 0x10
  elseif c == 0xae then self.cmdbyte = self.cmdbyte & ~0x10
  elseif c == 0xd0 then self:_push(self.outport)
  elseif c >= 0xf0 then
    if c & 1 == 0 then self:_reset(("0x%02x"):format(c), cpu) end
  end
end

function Kbc:write(port, v, cpu)
  v = v & 0xff
  if port == self.cmd_port then
    self.last_was_cmd = true
    self.pending = nil
    self:_command(v, cpu)
    return
  end
  self.last_was_cmd = false
  local p = self.pending
  self.pending = nil
  if p == 0x60 then
    self.cmdbyte = v
  elseif p == 0xd1 then
    self.outport = v
    self.a20 = v & 0x02 ~= 0
    if v & 0x01 == 0 then self:_reset("0xd1", cpu) end
  elseif v == 0xff then self:_push(0xfa, 0xaa)
  elseif v == 0xee then self:_push(0xee)
  elseif v == 0xf2 then self:_push(0xfa, 0xab, 0x83)
  else self:_push(0xfa)
  end
end

function Kbc:stats()
  return { resets = self.resets, last_reset = self.last_reset, commands = self.n_cmds,
           command_byte = self.cmdbyte, a20 = self.a20 }
end

function Kbc:remove()
  for _, t in ipairs(self.traps) do t:remove() end
  self.traps = {}
end

return M
