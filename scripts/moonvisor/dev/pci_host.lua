-- moonvisor.dev.pci_host: PCI configuration mechanism #1 (0xCF8 address,
-- 0xCFC-0xCFF data) over a bus of configuration-space-only functions, an
-- i440FX host bridge at 00:00.0 by default, and the reset control register
-- at 0xCF9 (PIIX3's).
--
--   local pci = require("moonvisor.dev.pci_host").new(g, {
--     on_reset = function(cause, cpu) end,    -- 0xCF9 written with bit 2: cause "0xcf9"
--     host_bridge = true,                     -- false: an empty bus
--   })
--   pci:add(dev, fn, { vendor =, device =, class = 0x060000, revision =, header_type =,
--                      subsystem_vendor =, subsystem =, bytes = { [off] = byte } })
--   pci:config(dev, fn) -> the function's 256-byte table (0-based), or nil
--   pci:config_read(bus, dev, fn, off, size)  pci:config_write(bus, dev, fn, off, value, size)
--   pci:read(port, size)  pci:write(port, value, size)  pci:stats()  pci:remove()
--
-- Model:
-- * 0xCF8: a 32-bit access reads/writes the address (bit 31 enable, bus
--   23-16, device 15-11, function 10-8, register 7-2; bits 0-1 read 0).
--   Narrower accesses at 0xCF8, 0xCFA, 0xCFB read all-ones, are ignored.
-- * 0xCFC+k reads (size 1, 2, 4) config offset (register | k) of the
--   addressed function; with bit 31 clear, another bus, or no function
--   there: all-ones, and writes are ignored.
-- * A function's configuration space: IDs, class, revision, header type,
--   subsystem IDs and interrupt pin are read-only; BARs (0x10-0x27) read 0
--   (no resources); the command register, latency timer, interrupt line and
--   0x40-0xFF (device-specific: the i440FX's PAM and SMRAM registers) keep
--   what is written.  Status reads 0x0280 (fast back-to-back, medium
--   DEVSEL) for the host bridge.
-- * 0xCF9 (byte): reads the last system-reset bit (bit 1) written; a write
--   with bit 2 (reset CPU) set calls on_reset and changes nothing else (as
--   QEMU's PIIX3).  Other sizes at 0xCF9 belong to 0xCF8's rules.
local M = {}
local Pci = {}
Pci.__index = Pci
M.PciHost = Pci

local function ones(size) return (1 << (8 * size)) - 1 end

local function writable(off)
  if off == 0x04 or off == 0x05 or off == 0x0c or off == 0x0d or off == 0x0f or off == 0x3c then return true end
  return off >= 0x40
end

function M.new(g, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("pci_host.new: options must be a table, got " .. type(opts), 2) end
  if opts.on_reset ~= nil and type(opts.on_reset) ~= "function" then
    error("pci_host.new: on_reset must be a function", 2)
  end
  local self = setmetatable({
    on_reset = opts.on_reset, address = 0, rcr = 0, funcs = {}, resets = 0,
    n_reads = 0, n_writes = 0, n_absent = 0, traps = {},
  }, Pci)
  if opts.host_bridge ~= false then
    self:add(0, 0, { vendor = 0x8086, device = 0x1237, revision = 0x02, class = 0x060000, header_type = 0,
                     status = 0x0280, name = "i440FX host bridge" })
  end
  local handler = function(e, cpu)
    if e.write then self:write(e.port, e.data, e.size, cpu) return end
    return self:read(e.port, e.size)
  end
  self.handler = handler
  if g then
    self.traps[1] = g:trap("io", 0xcf8, 4, handler)
    self.traps[2] = g:trap("io", 0xcfc, 4, handler)
  end
  return self
end

-- Adds the function dev.fn on bus 0.
function Pci:add(dev, fn, d)
  if math.type(dev) ~= "integer" or dev < 0 or dev > 31 or math.type(fn) ~= "integer" or fn < 0 or fn > 7 then
    error(("pci_host:add: device 0-31 and function 0-7, got %s.%s"):format(tostring(dev), tostring(fn)), 2)
  end
  if type(d) ~= "table" or math.type(d.vendor) ~= "integer" or math.type(d.device) ~= "integer" then
    error("pci_host:add: the function needs integer vendor and device IDs", 2)
  end
  local c = {}
  for i = 0, 255 do c[i] = 0 end
  local function put(off, v, n) for i = 0, n - 1 do c[off + i] = (v >> (8 * i)) & 0xff end end
  put(0x00, d.vendor, 2)
  put(0x02, d.device, 2)
  put(0x06, d.status or 0, 2)
  put(0x08, d.revision or 0, 1)
  put(0x09, d.class or 0, 3)
  put(0x0e, d.header_type or 0, 1)
  put(0x2c, d.subsystem_vendor or 0x1af4, 2)
  put(0x2e, d.subsystem or 0x1100, 2)
  put(0x3d, d.interrupt_pin or 0, 1)
  for off, v in pairs(d.bytes or {}) do c[off] = v & 0xff end
  c.name = d.name
  self.funcs[(dev << 3) | fn] = c
  return c
end

function Pci:config(dev, fn) return self.funcs[(dev << 3) | fn] end

function Pci:config_read(bus, dev, fn, off, size)
  local c = bus == 0 and self.funcs[(dev << 3) | fn]
  if not c then self.n_absent = self.n_absent + 1 return ones(size) end
  self.n_reads = self.n_reads + 1
  local v = 0
  for i = 0, size - 1 do
    local o = (off + i) & 0xff
    local b = (o >= 0x10 and o < 0x28) and 0 or c[o]
    v = v | (b << (8 * i))
  end
  return v
end

function Pci:config_write(bus, dev, fn, off, value, size)
  local c = bus == 0 and self.funcs[(dev << 3) | fn]
  if not c then self.n_absent = self.n_absent + 1 return end
  self.n_writes = self.n_writes + 1
  for i = 0, size - 1 do
    local o = (off + i) & 0xff
    if writable(o) then c[o] = (value >> (8 * i)) & 0xff end
  end
end

local function decode(a)
  return (a >> 16) & 0xff, (a >> 11) & 0x1f, (a >> 8) & 7, a & 0xfc
end

function Pci:read(port, size)
  size = size or 1
  if port == 0xcf8 and size == 4 then return self.address end
  if port == 0xcf9 and size == 1 then return self.rcr end
  if port >= 0xcfc and port <= 0xcff then
    if self.address & 0x80000000 == 0 then return ones(size) end
    local bus, dev, fn, reg = decode(self.address)
    return self:config_read(bus, dev, fn, reg + (port - 0xcfc), size)
  end
  return ones(size)
end

function Pci:write(port, value, size, cpu)
  size = size or 1
  if port == 0xcf8 and size == 4 then
    self.address = value & 0xfffffffc
  elseif port == 0xcf9 and size == 1 then
    if value & 0x04 ~= 0 then
      self.resets = self.resets + 1
      if self.on_reset then self.on_reset("0xcf9", cpu) end
      return
    end
    self.rcr = value & 0x02
  elseif port >= 0xcfc and port <= 0xcff then
    if self.address & 0x80000000 == 0 then return end
    local bus, dev, fn, reg = decode(self.address)
    self:config_write(bus, dev, fn, reg + (port - 0xcfc), value, size)
  end
end

function Pci:stats()
  local n = 0
  for _ in pairs(self.funcs) do n = n + 1 end
  return { address = self.address, functions = n, config_reads = self.n_reads, config_writes = self.n_writes,
           absent = self.n_absent, resets = self.resets, rcr = self.rcr }
end

function Pci:remove()
  for _, t in ipairs(self.traps) do t:remove() end
  self.traps = {}
end

return M
