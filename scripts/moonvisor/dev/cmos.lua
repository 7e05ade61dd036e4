-- moonvisor.dev.cmos: the PC's CMOS RAM and real-time clock (MC146818) at
-- ports 0x70 (index) and 0x71 (data), one io trap over both.
--
--   local cmos = require("moonvisor.dev.cmos").new(g, {
--     base = 0x70,
--     clock = function() return os.date("!*t") end,  -- the default: host UTC;
--                 -- any table with year, month, day, hour, min, sec, wday (1 = Sunday)
--     mem_size = 64 * 1024 * 1024,   -- guest RAM below 4 GiB in bytes: fills 0x15-0x18,
--                                    -- 0x30/0x31, 0x34/0x35
--     above_4g = 0,                  -- RAM from 4 GiB, bytes: 0x5b-0x5d (64 KiB units)
--     cpus = 1,                      -- 0x5f holds cpus - 1 (as QEMU's pc machine)
--   })
--   cmos:get(index) cmos:set(index, byte)   the registers as the guest sees them
--   cmos:read(port) cmos:write(port, byte)  port access, as the guest's
--   cmos:stats() cmos:remove()
--
-- Model:
-- * 0x70 write: bit 7 is the NMI mask (kept in cmos.nmi_disabled, otherwise
--   ignored), bits 0-6 the index.  0x70 reads 0xff (write-only on the chip).
-- * 0x00 seconds, 0x02 minutes, 0x04 hours, 0x06 weekday, 0x07 day, 0x08
--   month, 0x09 year (two digits) and 0x32 century come from `clock` on every
--   read; BCD unless register B bit 2 (DM) is set, 24-hour if B bit 1 is set,
--   else 1-12 with bit 7 for PM.  Writes to them are counted and ignored
--   (setting the clock is not implemented).  0x01/0x03/0x05 (alarm) are RAM.
-- * A (0x0A): 0x26 after reset, UIP (bit 7) never set, bits 0-6 writable.
--   B (0x0B): 0x02 (24-hour, BCD), writable.  C (0x0C): reads 0 (no
--   periodic, alarm or update interrupts are generated).  D (0x0D): 0x80
--   (valid RAM and time), read-only.
-- * 0x0E-0x7F: NVRAM, read/write (but 0x32, the century); the mem_size
--   bytes are preset there.
local dev = require "moonvisor.dev"

local M = {}
local Cmos = {}
Cmos.__index = Cmos
M.Cmos = Cmos

local TIME = { [0x00] = "sec", [0x02] = "min", [0x04] = "hour", [0x06] = "wday",
               [0x07] = "day", [0x08] = "month", [0x09] = "year", [0x32] = "century" }

local function host_clock() return os.date("!*t") end

local function put16(ram, lo, v)
  if v > 0xffff then v = 0xffff end
  ram[lo] = v & 0xff
  ram[lo + 1] = v >> 8
end

function M.new(g, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("cmos.new: options must be a table, got " .. type(opts), 2) end
  if opts.clock ~= nil and type(opts.clock) ~= "function" then
    error("cmos.new: clock must be a function returning a date table", 2)
  end
  local self = setmetatable({
    base = opts.base or 0x70, clock = opts.clock or host_clock,
    index = 0, nmi_disabled = false, ram = {},
    n_reads = 0, n_writes = 0, n_time_writes = 0,
  }, Cmos)
  local ram = self.ram
  for i = 0, 0x7f do ram[i] = 0 end
  ram[0x0a], ram[0x0b], ram[0x0d] = 0x26, 0x02, 0x80
  local mem = opts.mem_size
  if mem then
    if math.type(mem) ~= "integer" or mem < 0 then
      error("cmos.new: mem_size must be a byte count, got " .. tostring(mem), 2)
    end
    local kb = mem // 1024
    put16(ram, 0x15, math.min(kb, 640))                              -- base memory, KiB
    local ext = math.max(0, kb - 1024)                                -- above 1 MiB, KiB
    put16(ram, 0x17, ext)
    put16(ram, 0x30, ext)
    put16(ram, 0x34, math.max(0, mem - 16 * 1024 * 1024) // 65536)   -- above 16 MiB, 64 KiB units
  end
  local high = opts.above_4g
  if high then
    if math.type(high) ~= "integer" or high < 0 then
      error("cmos.new: above_4g must be a byte count, got " .. tostring(high), 2)
    end
    local units = math.min(high // 65536, 0xffffff)
    ram[0x5b], ram[0x5c], ram[0x5d] = units & 0xff, (units >> 8) & 0xff, units >> 16
  end
  local cpus = opts.cpus
  if cpus then
    if math.type(cpus) ~= "integer" or cpus < 1 or cpus > 256 then
      error("cmos.new: cpus must be 1..256, got " .. tostring(cpus), 2)
    end
    ram[0x5f] = cpus - 1
  end
  self.handler = dev.bytewise(self.base, 2, Cmos.read, Cmos.write, self)
  self.trap = g:trap("io", self.base, 2, self.handler)
  return self
end

function Cmos:_encode(v)
  if self.ram[0x0b] & 0x04 ~= 0 then return v end
  return ((v // 10) << 4) | (v % 10)
end

function Cmos:_time(field)
  local t = self.clock()
  if field == "hour" then
    local h = t.hour
    if self.ram[0x0b] & 0x02 ~= 0 then return self:_encode(h) end
    local pm = h >= 12 and 0x80 or 0
    h = h % 12
    if h == 0 then h = 12 end
    return self:_encode(h) | pm
  elseif field == "year" then return self:_encode(t.year % 100)
  elseif field == "century" then return self:_encode(t.year // 100)
  end
  return self:_encode(t[field])
end

-- Register `index` (0-0x7f) as the guest reads it.
function Cmos:get(index)
  index = index & 0x7f
  local f = TIME[index]
  if f then return self:_time(f) end
  if index == 0x0a then return self.ram[0x0a] & 0x7f end   -- UIP never set
  if index == 0x0c then return 0 end
  return self.ram[index]
end

-- Register `index` as the guest writes it.
function Cmos:set(index, v)
  index, v = index & 0x7f, v & 0xff
  if TIME[index] then self.n_time_writes = self.n_time_writes + 1 return end
  if index == 0x0a then self.ram[0x0a] = v & 0x7f return end
  if index == 0x0c or index == 0x0d then return end
  self.ram[index] = v
end

function Cmos:read(port)
  if port ~= self.base + 1 then return 0xff end
  self.n_reads = self.n_reads + 1
  return self:get(self.index)
end

function Cmos:write(port, v)
  if port == self.base then
    self.index = v & 0x7f
    self.nmi_disabled = v & 0x80 ~= 0
  else
    self.n_writes = self.n_writes + 1
    self:set(self.index, v)
  end
end

function Cmos:stats()
  return { reads = self.n_reads, writes = self.n_writes, time_writes = self.n_time_writes,
           index = self.index, nmi_disabled = self.nmi_disabled }
end

function Cmos:remove()
  if self.trap then self.trap:remove(); self.trap = nil end
end

return M
