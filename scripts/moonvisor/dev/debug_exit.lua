-- moonvisor.dev.debug_exit: QEMU's isa-debug-exit, the port a test kernel
-- writes to end the machine with a status of its choice.
--
--   local dx = require("moonvisor.dev.debug_exit").new(g, {
--     iobase = 0xf4, iosize = 4,                 -- QEMU's -device isa-debug-exit,iobase=,iosize=
--     on_exit = function(value, status, cpu) end, -- status = (value << 1) | 1
--   })
--   dx.value, dx.status   the last write (nil before any)
--   dx:read(port, size)  dx:write(port, value, size, cpu)  dx:stats()  dx:remove()
--
-- Model: a write of any size at any of the iosize ports ends the machine
-- with exit status (value << 1) | 1, value being what was written (QEMU
-- calls exit() with it, so the process status is its low 8 bits); reads
-- return 0.  Here the device only records the write and calls on_exit: the
-- machine (moonvisor.pc) stops the VCPU and reports the status.
local M = {}
local DebugExit = {}
DebugExit.__index = DebugExit
M.DebugExit = DebugExit

function M.new(g, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("debug_exit.new: options must be a table, got " .. type(opts), 2) end
  local iobase, iosize = opts.iobase or 0xf4, opts.iosize or 4
  if math.type(iobase) ~= "integer" or iobase < 0 or iobase > 0xffff then
    error("debug_exit.new: iobase must be a port number, got " .. tostring(iobase), 2)
  end
  if math.type(iosize) ~= "integer" or iosize < 1 or iosize > 0x10000 - iobase then
    error("debug_exit.new: iosize must be 1.." .. (0x10000 - iobase) .. ", got " .. tostring(iosize), 2)
  end
  if opts.on_exit ~= nil and type(opts.on_exit) ~= "function" then error("debug_exit.new: on_exit must be a function", 2) end
  local self = setmetatable({ iobase = iobase, iosize = iosize, on_exit = opts.on_exit, writes = 0, traps = {} }, DebugExit)
  self.handler = function(e, cpu)
    if e.write then self:write(e.port, e.data, e.size, cpu) return end
    return self:read(e.port, e.size)
  end
  if g then self.traps[1] = g:trap("io", iobase, iosize, self.handler) end
  return self
end

function DebugExit:read() return 0 end

function DebugExit:write(_, value, size, cpu)
  size = size or 1
  value = value & ((1 << (8 * size)) - 1)
  self.writes = self.writes + 1
  self.value, self.status = value, (value << 1) | 1
  if self.on_exit then self.on_exit(value, self.status, cpu) end
end

function DebugExit:stats() return { writes = self.writes, value = self.value, status = self.status } end

function DebugExit:remove()
  for _, t in ipairs(self.traps) do t:remove() end
  self.traps = {}
end

return M
