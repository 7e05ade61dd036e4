-- moonvisor.dev.acpi_pm: the ACPI fixed hardware of a PIIX4-style power
-- management function, as the FADT describes it: PM1a event block (status,
-- enable), PM1a control (SCI_EN, SLP_TYP, SLP_EN), the PM timer and a GPE0
-- block.  Ports are QEMU's pc machine's (PM base 0xb000, GPE0 0xafe0).
--
--   local pm = require("moonvisor.dev.acpi_pm").new(g, {
--     base = 0xb000,         -- 64 ports: PM1_STS +0, PM1_EN +2, PM1_CNT +4, PM_TMR +8
--     gpe0 = 0xafe0, gpe0_len = 4,
--     sci = 9, raise_irq = function(line, level) end,   -- the SCI, level-triggered
--     clock = function() return seconds end,            -- monotonic; default mv.clock
--     start = seconds,       -- the clock's value the timer counts from (default: now)
--     on_sleep = function(state, slp_typ, cpu) end,     -- "S5", "S4", "S3" or nil (unknown)
--   })
--   pm:timer() -> the 24-bit count now    pm:power_button()   (sets PWRBTN_STS, SCI if enabled)
--   pm:read(port, size)  pm:write(port, value, size)  pm:stats()  pm:remove()
--
-- Model (QEMU's hw/acpi/core.c decoding):
-- * PM1_STS: TMR_STS (bit 0) is set while the timer's bit 23 differs from
--   what it was when the guest last cleared it; PWRBTN_STS (bit 8) by
--   power_button(); WAK_STS (bit 15) after a sleep.  Write 1 to clear.
--   PM1_EN is read/write (TMR_EN 0, GBL_EN 5, PWRBTN_EN 8, RTC_EN 10).  The
--   SCI is raised while STS & EN has PWRBTN set (the timer raises no SCI:
--   nothing here runs between the guest's exits).
-- * PM1_CNT: SCI_EN (bit 0) reads 1 (there is no SMI command port: ACPI mode
--   from reset); bits 1-2 and SLP_TYP (10-12) are stored; SLP_EN (bit 13)
--   reads 0.  Writing SLP_EN with SLP_TYP 0 is soft-off ("S5"), 1 suspend to
--   RAM ("S3"), 2 suspend to disk ("S4", QEMU's default s4_val, which QEMU
--   turns into a power-off); other types are counted and otherwise ignored,
--   as QEMU does.  The DSDT's \_S5_ says 0.
-- * PM_TMR: 3.579545 MHz, 24 bits, from `clock`; read-only.
-- * GPE0: status (first half, write 1 to clear; nothing sets it) and enable
--   (second half, read/write).
-- * Byte, word and dword accesses are all taken at any offset; the other
--   ports of the block read 0.
local core = require "moonvisor.core"

local M = {}
local Pm = {}
Pm.__index = Pm
M.AcpiPm = Pm
M.FREQ = 3579545

local TMR_STS, PWRBTN_STS, WAK_STS = 0x0001, 0x0100, 0x8000
local SLP_EN = 0x2000
local STATES = { [0] = "S5", [1] = "S3", [2] = "S4" }

function M.new(g, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("acpi_pm.new: options must be a table, got " .. type(opts), 2) end
  for _, k in ipairs{ "raise_irq", "clock", "on_sleep" } do
    if opts[k] ~= nil and type(opts[k]) ~= "function" then error("acpi_pm.new: " .. k .. " must be a function", 2) end
  end
  if opts.start ~= nil and type(opts.start) ~= "number" then
    error("acpi_pm.new: start must be a number (a value of the clock), got " .. type(opts.start), 2)
  end
  local self = setmetatable({
    base = opts.base or 0xb000, gpe0 = opts.gpe0 or 0xafe0, gpe0_len = opts.gpe0_len or 4,
    sci = opts.sci or 9, raise_irq = opts.raise_irq, clock = opts.clock or core.clock, on_sleep = opts.on_sleep,
    sts = 0, en = 0, cnt = 0, gpe_sts = 0, gpe_en = 0, level = 0,
    n_sleeps = 0, n_ignored = 0, last_sleep = nil, n_timer_reads = 0, traps = {},
  }, Pm)
  self.t0 = opts.start or self.clock()
  self.tmr_mark = 0
  local handler = function(e, cpu)
    if e.write then self:write(e.port, e.data, e.size, cpu) return end
    return self:read(e.port, e.size)
  end
  self.handler = handler
  if g then
    self.traps[1] = g:trap("io", self.base, 64, handler)
    self.traps[2] = g:trap("io", self.gpe0, self.gpe0_len, handler)
  end
  return self
end

function Pm:timer()
  return math.floor((self.clock() - self.t0) * M.FREQ) & 0xffffff
end

function Pm:_status()
  local s = self.sts
  if ((self:timer() >> 23) & 1) ~= self.tmr_mark then s = s | TMR_STS end
  return s
end

function Pm:_update_sci()
  local level = (self.sts & self.en & PWRBTN_STS) ~= 0 and 1 or 0
  if level ~= self.level then
    self.level = level
    if self.raise_irq then self.raise_irq(self.sci, level) end
  end
end

function Pm:power_button()
  self.sts = self.sts | PWRBTN_STS
  self:_update_sci()
end

-- One byte of the register file at port.
function Pm:_byte(port)
  local off = port - self.base
  if off >= 0 and off < 64 then
    if off < 2 then return (self:_status() >> (8 * off)) & 0xff end
    if off < 4 then return (self.en >> (8 * (off - 2))) & 0xff end
    if off < 6 then return (((self.cnt & ~SLP_EN) | 1) >> (8 * (off - 4))) & 0xff end
    if off < 12 then
      if off == 8 then self.n_timer_reads = self.n_timer_reads + 1 end
      return (self:timer() >> (8 * (off - 8))) & 0xff
    end
    return 0
  end
  off = port - self.gpe0
  local half = self.gpe0_len // 2
  if off >= 0 and off < self.gpe0_len then
    if off < half then return (self.gpe_sts >> (8 * off)) & 0xff end
    return (self.gpe_en >> (8 * (off - half))) & 0xff
  end
  return 0xff
end

function Pm:read(port, size)
  size = size or 1
  local v = 0
  for i = 0, size - 1 do v = v | (self:_byte(port + i) << (8 * i)) end
  return v
end

function Pm:_sleep(cpu)
  local typ = (self.cnt >> 10) & 7
  local state = STATES[typ]
  if not state then
    self.n_ignored = self.n_ignored + 1
    return
  end
  self.n_sleeps = self.n_sleeps + 1
  self.last_sleep = state
  self.sts = self.sts | WAK_STS
  if self.on_sleep then self.on_sleep(state, typ, cpu) end
end

function Pm:_write_byte(port, b, cpu)
  local off = port - self.base
  if off >= 0 and off < 64 then
    if off < 2 then
      local bits = b << (8 * off)
      if off == 0 and b & TMR_STS ~= 0 then self.tmr_mark = (self:timer() >> 23) & 1 end
      self.sts = self.sts & ~bits
      self:_update_sci()
    elseif off < 4 then
      local sh = 8 * (off - 2)
      self.en = (self.en & ~(0xff << sh)) | (b << sh)
      self:_update_sci()
    elseif off < 6 then
      local sh = 8 * (off - 4)
      self.cnt = (self.cnt & ~(0xff << sh)) | (b << sh)
      if off == 5 and (b << 8) & SLP_EN ~= 0 then
        self:_sleep(cpu)
        self.cnt = self.cnt & ~SLP_EN
      end
    end
    return
  end
  off = port - self.gpe0
  local half = self.gpe0_len // 2
  if off >= 0 and off < self.gpe0_len then
    if off < half then self.gpe_sts = self.gpe_sts & ~(b << (8 * off))
    else
      local sh = 8 * (off - half)
      self.gpe_en = (self.gpe_en & ~(0xff << sh)) | (b << sh)
    end
  end
end

function Pm:write(port, value, size, cpu)
  size = size or 1
  -- The control register's high byte carries SLP_EN: write it last, so a
  -- 16-bit write sets SLP_TYP before the sleep is decoded.
  for i = 0, size - 1 do self:_write_byte(port + i, (value >> (8 * i)) & 0xff, cpu) end
end

function Pm:stats()
  return { sleeps = self.n_sleeps, ignored_sleeps = self.n_ignored, last_sleep = self.last_sleep,
           timer_reads = self.n_timer_reads, pm1_sts = self.sts, pm1_en = self.en, pm1_cnt = self.cnt | 1,
           sci = self.level }
end

function Pm:remove()
  for _, t in ipairs(self.traps) do t:remove() end
  self.traps = {}
end

return M
