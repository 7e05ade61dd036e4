-- moonvisor.dev.port92: System Control Port A at 0x92 (the "fast A20 and
-- reset" port of PS/2 machines, which QEMU's pc machine has).
--
--   local p92 = require("moonvisor.dev.port92").new(g, {
--     on_reset = function(cause, cpu) end,   -- bit 0 written 0 -> 1: cause "0x92"
--   })
--   p92.a20, p92.resets   p92:read(port, size)  p92:write(port, value, size, cpu)  p92:stats()  p92:remove()
--
-- Model: bit 1 is the A20 gate (set from reset: A20 is always on here, the
-- bit only reads back), bit 0 a reset on its rising edge; other bits read
-- back as written.  Wider accesses see the byte at 0x92 in their low byte
-- and all-ones above it.
local M = {}
local Port92 = {}
Port92.__index = Port92
M.Port92 = Port92

function M.new(g, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("port92.new: options must be a table, got " .. type(opts), 2) end
  if opts.on_reset ~= nil and type(opts.on_reset) ~= "function" then error("port92.new: on_reset must be a function", 2) end
  local self = setmetatable({ value = 0x02, a20 = true, resets = 0, on_reset = opts.on_reset, traps = {} }, Port92)
  self.handler = function(e, cpu)
    if e.write then self:write(e.port, e.data, e.size, cpu) return end
    return self:read(e.port, e.size)
  end
  if g then self.traps[1] = g:trap("io", 0x92, 1, self.handler) end
  return self
end

function Port92:read(_, size)
  size = size or 1
  return self.value | (((1 << (8 * size)) - 1) & ~0xff)
end

function Port92:write(_, v, _, cpu)
  v = v & 0xff
  local rising = (v & 1) == 1 and (self.value & 1) == 0
  self.value = v & ~1
  self.a20 = v & 2 ~= 0
  if rising then
    self.resets = self.resets + 1
    if self.on_reset then self.on_reset("0x92", cpu) end
  end
end

function Port92:stats() return { value = self.value, a20 = self.a20, resets = self.resets } end

function Port92:remove()
  for _, t in ipairs(self.traps) do t:remove() end
  self.traps = {}
end

return M
