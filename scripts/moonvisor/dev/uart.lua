-- moonvisor.dev.uart: an 8250/16550A UART model (the PC's COM ports), one
-- io trap over its 8 registers.
--
--   local uart = require("moonvisor.dev.uart").new(g, {
--     base = 0x3f8,          -- first port (COM1); 8 ports are trapped
--     irq = 4,               -- the line passed to raise_irq
--     raise_irq = function(line, level) end,  -- called when the interrupt
--                            -- output changes: level 1 (pending) or 0
--     output = function(bytes) end,  -- each transmitted byte, at once; default:
--                            -- io.stdout, buffered up to a newline or 4 KiB
--                            -- (uart:flush() writes the rest); false discards
--     input = "string" or function() return byte_or_string_or_nil end,
--   })
--   uart:feed(str)    more input, delivered as the guest makes room for it
--   uart:receive(str) bytes arriving on the line now: they overrun a full FIFO
--   uart:poll()       pull input (a function source) and update the interrupt
--   uart:read(port) uart:write(port, byte)   register access, as the guest's
--   uart:flush() uart:stats() uart:irq_level() uart:remove()
--   uart.tap = function(byte) end   -- also sees each transmitted byte, whatever
--                          -- uart.out is (moonvisor.pc's panic watch)
--
-- Model:
-- * Registers: RBR/THR, IER, IIR/FCR, LCR (DLAB), MCR, LSR, MSR, SCR and the
--   divisor latch DLL/DLM (at offsets 0/1 while LCR.DLAB=1; 12 = 9600 baud
--   after reset).
-- * Transmission is instantaneous: THR and the shift register are always
--   empty (LSR.THRE and TEMT stay set); the TX FIFO never holds anything.
-- * Reception: the RX holding register (1 byte) or, with FCR bit 0 set, the
--   16-byte RX FIFO.  Input from `input`/feed() is flow-controlled: it is
--   moved in whenever the guest touches RBR, LSR or IIR (or on feed/poll)
--   and only as far as there is room, so none is lost: when the guest
--   clears the receiver (FCR) or enters loopback, input bytes it has not read
--   go back to the front of the input queue.  Bytes that arrive
--   regardless -- loopback THR writes, uart:receive() -- overrun: LSR.OE is
--   set; in FIFO mode the new byte is lost, without FIFO it replaces RBR.
--   In loopback (MCR bit 4) the input is disconnected and the modem inputs
--   follow MCR (RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD).
-- * Interrupts by priority: receiver line status (OE, IER bit 2), received
--   data (IER bit 0; in FIFO mode 0x04 at or above the trigger level, and the
--   character timeout 0x0C below it -- there is no time here, so the timeout
--   counts as elapsed at once), THR empty (IER bit 1), modem status (IER
--   bit 3).  Reading IIR when it shows THR empty clears that interrupt, as
--   does a THR write (after which it is raised again: a fresh edge per byte).
--   Reading LSR clears line status, MSR its delta bits.  IIR bits 6-7 are set
--   while the FIFOs are enabled.  MCR.OUT2 does not gate the interrupt.
-- * Not implemented: a raw host terminal mode (stdin in raw mode as input),
--   parity/framing/break errors, transmit timing, the scratch-less 8250
--   variant.
local dev = require "moonvisor.dev"

local M = {}
local Uart = {}
Uart.__index = Uart
M.Uart = Uart

local LSR_DR <const>, LSR_OE <const>, LSR_IDLE <const> = 0x01, 0x02, 0x60   -- IDLE: THRE | TEMT
local LSR_ERRORS <const> = 0x1e  -- OE, PE, FE, BI
local IER_RDI <const>, IER_THRI <const>, IER_RLSI <const>, IER_MSI <const> = 0x01, 0x02, 0x04, 0x08
local IIR_NONE <const>, IIR_MSI <const>, IIR_THRI <const>, IIR_RDI <const>, IIR_RLSI <const>, IIR_CTI <const> =
  0x01, 0x00, 0x02, 0x04, 0x06, 0x0c
local MCR_LOOP <const> = 0x10
local MSR_DEFAULT <const> = 0xb0        -- DCD, DSR, CTS asserted (a connected terminal)
local TRIGGER = { [0] = 1, 4, 8, 14 }
local FIFO_SIZE <const> = 16

-- The default output: io.stdout, the bytes kept as numbers in self.txbuf
-- (self.txn of them) and turned into one string per line or per 4 KiB (a
-- string per byte would cost more than the rest of a THR write).  A THR
-- write and uart.out (stdout_out) put bytes in with put_stdout;
-- flush_stdout writes the line.
local STDOUT_CHUNK <const> = 4096
local char, unpack = string.char, table.unpack

local function flush_stdout(self)
  local n = self.txn
  if n > 0 then
    self.txn = 0
    io.stdout:write(char(unpack(self.txbuf, 1, n)))
    io.stdout:flush()
  end
end

local function put_stdout(self, b)
  local n = self.txn + 1
  self.txbuf[n], self.txn = b, n
  if b == 10 or n >= STDOUT_CHUNK then flush_stdout(self) end
end

-- The default output as a string function (uart.out): the bytes go into
-- the same line as the guest's.
local function stdout_out(self)
  return function(s)
    for i = 1, #s do put_stdout(self, s:byte(i)) end
  end
end

-- The registers' helpers are local functions, not methods: a register
-- access calls several, and a method call through the class costs a
-- failed lookup in the object first.
local pull, update_irq, registers

function M.new(g, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("uart.new: options must be a table, got " .. type(opts), 2) end
  local self = setmetatable({
    base = opts.base or 0x3f8, irq = opts.irq or 4, raise_irq = opts.raise_irq,
    ier = 0, lcr = 0, mcr = 0, scr = 0, dll = 12, dlm = 0,
    fifo = false, trigger = 1, lsr_err = 0, msr = MSR_DEFAULT,
    rbr = 0, rx = {},            -- rx[1] is the oldest received byte; +0x100: from input
    thr_ipending = false, level = 0,
    inq = {}, inpos = 1,         -- queued input strings, position in inq[1]
    input_fn = false, tap = false, _stdout = false,   -- (false, not nil: fields the object has are
                                 -- found without a second lookup, in its class)
    n_tx = 0, n_rx = 0, n_overrun = 0, n_irq = 0, n_access = 0,
  }, Uart)
  if opts.output == false then
    self.out = function() end
  elseif opts.output ~= nil then
    if type(opts.output) ~= "function" then error("uart.new: output must be a function or false", 2) end
    self.out = opts.output
  else
    self.txbuf, self.txn = {}, 0
    self.out = stdout_out(self)
    self._stdout = self.out   -- (while uart.out is this one, a THR write puts its byte in the line itself)
  end
  local input = opts.input
  if type(input) == "function" then self.input_fn = input
  elseif type(input) == "string" then self.inq[1] = input
  elseif input ~= nil then error("uart.new: input must be a string or a function, got " .. type(input), 2) end
  if self.raise_irq ~= nil and type(self.raise_irq) ~= "function" then
    error("uart.new: raise_irq must be a function", 2)
  end
  self._reg = { size = 1 }       -- the access uart:read and uart:write give the register code
  self.handler = registers(self)
  self.trap = g:trap("io", self.base, 8, self.handler)
  pull(self)
  return self
end

local function next_input(self)
  while true do
    local s = self.inq[1]
    if s then
      local p = self.inpos
      if p <= #s then
        self.inpos = p + 1
        return s:byte(p)
      end
      table.remove(self.inq, 1)
      self.inpos = 1
    elseif self.input_fn then
      local v = self.input_fn()
      if v == nil then return nil end
      if type(v) == "number" then return v & 0xff end
      self.inq[#self.inq + 1] = tostring(v)
    else
      return nil
    end
  end
end

-- Moves input into the receiver while it has room (not in loopback).
function pull(self)
  if (not self.inq[1] and not self.input_fn) or self.mcr & MCR_LOOP ~= 0 then return end
  local cap = self.fifo and FIFO_SIZE or 1
  local rx = self.rx
  while #rx < cap do
    local b = next_input(self)
    if not b then break end
    rx[#rx + 1] = b | 0x100
  end
end

local function clear_rx(self, keep_line)
  local back, kept = {}, {}
  for _, b in ipairs(self.rx) do
    if b & 0x100 ~= 0 then back[#back + 1] = string.char(b & 0xff)
    elseif keep_line then kept[#kept + 1] = b end
  end
  self.rx = kept
  if #back > 0 then
    local q = self.inq
    if q[1] then q[1] = q[1]:sub(self.inpos) end
    self.inpos = 1
    table.insert(q, 1, table.concat(back))
  end
end

-- A byte arriving on the line now.
local function receive(self, b)
  local rx = self.rx
  if #rx >= (self.fifo and FIFO_SIZE or 1) then
    self.lsr_err = self.lsr_err | LSR_OE
    self.n_overrun = self.n_overrun + 1
    if not self.fifo then rx[1] = b end   -- the 8250 holding register is overwritten
  else
    rx[#rx + 1] = b
  end
end

local function iir(self)
  local ier = self.ier
  if ier == 0 then return IIR_NONE end   -- every source masked (a polling driver)
  if ier & IER_RLSI ~= 0 and self.lsr_err ~= 0 then return IIR_RLSI end
  local n = #self.rx
  if ier & IER_RDI ~= 0 and n > 0 then
    if self.fifo and n < self.trigger then return IIR_CTI end
    return IIR_RDI
  end
  if ier & IER_THRI ~= 0 and self.thr_ipending then return IIR_THRI end
  if ier & IER_MSI ~= 0 and self.msr & 0x0f ~= 0 then return IIR_MSI end
  return IIR_NONE
end

-- Passes a change of the interrupt output to raise_irq.  (The register
-- accesses skip the call while every source is masked and the output is
-- low: a polling driver's, where nothing can change.)
function update_irq(self)
  local level = (iir(self) & 1) == 0 and 1 or 0
  if level ~= self.level then
    self.level = level
    if level == 1 then self.n_irq = self.n_irq + 1 end
    if self.raise_irq then self.raise_irq(self.irq, level) end
  end
end

-- The modem status inputs change to `lines` (bits 4-7 of MSR).
local function set_modem_lines(self, lines)
  local old = self.msr
  local delta = 0
  if (old ~ lines) & 0x10 ~= 0 then delta = delta | 0x01 end       -- DCTS
  if (old ~ lines) & 0x20 ~= 0 then delta = delta | 0x02 end       -- DDSR
  if old & 0x40 ~= 0 and lines & 0x40 == 0 then delta = delta | 0x04 end  -- TERI (trailing edge)
  if (old ~ lines) & 0x80 ~= 0 then delta = delta | 0x08 end       -- DDCD
  self.msr = (lines & 0xf0) | (old & 0x0f) | delta
end

local function loop_lines(mcr)
  return ((mcr & 0x02) << 3) | ((mcr & 0x01) << 5) | ((mcr & 0x04) << 4) | ((mcr & 0x08) << 4)
end

-- The register file, as the trap handler: handler(e) for an access e = {
-- port, size, write, data } of the guest's; a read returns the byte.  The
-- registers' code is here, in the handler, so that a byte access -- an LSR
-- poll, a THR write -- reaches it without a call in between; wider accesses
-- are split into bytes, as the ISA bus does (moonvisor.dev.bytewise).
function registers(self)
  local base = self.base
  local wide = dev.bytewise(base, 8, Uart.read, Uart.write, self)
  return function(e)
    if e.size ~= 1 then return wide(e) end
    self.n_access = self.n_access + 1
    local off = e.port - base
    if not e.write then
      local v
      if off == 5 then                      -- LSR first: a polling driver reads it before every byte
        if self.inq[1] or self.input_fn then pull(self) end
        v = (#self.rx > 0 and LSR_DR or 0) | self.lsr_err | LSR_IDLE
        self.lsr_err = 0
      elseif off == 0 then
        if self.lcr & 0x80 ~= 0 then return self.dll end
        if #self.rx == 0 then pull(self) end
        if #self.rx > 0 then
          self.rbr = table.remove(self.rx, 1) & 0xff
          self.n_rx = self.n_rx + 1
          pull(self)
        end
        v = self.rbr
      elseif off == 1 then
        if self.lcr & 0x80 ~= 0 then return self.dlm end
        return self.ier
      elseif off == 2 then
        pull(self)
        local id = iir(self)
        if id == IIR_THRI then self.thr_ipending = false end
        v = id | (self.fifo and 0xc0 or 0)
      elseif off == 3 then
        return self.lcr
      elseif off == 4 then
        return self.mcr
      elseif off == 6 then
        v = self.msr
        self.msr = v & 0xf0
      elseif off == 7 then
        return self.scr
      else
        return 0xff
      end
      if self.ier ~= 0 or self.level ~= 0 then update_irq(self) end
      return v
    end
    local v = e.data & 0xff
    if off == 0 then
      if self.lcr & 0x80 ~= 0 then self.dll = v return end
      if self.ier ~= 0 or self.level ~= 0 then   -- else the line stays low whatever happens: a polling driver
        self.thr_ipending = false
        update_irq(self)
      end
      if self.mcr & MCR_LOOP ~= 0 then
        receive(self, v)
      else
        self.n_tx = self.n_tx + 1
        local out = self.out
        if out == self._stdout then          -- the default output: into the line
          put_stdout(self, v)
        else
          out(char(v))
        end
        local tap = self.tap
        if tap then tap(v) end
      end
      self.thr_ipending = true          -- THR empties at once
      if self.ier ~= 0 or self.level ~= 0 then update_irq(self) end
      return
    elseif off == 1 then
      if self.lcr & 0x80 ~= 0 then self.dlm = v return end
      local changed = self.ier ~ v
      self.ier = v & 0x0f
      if changed & IER_THRI ~= 0 then self.thr_ipending = v & IER_THRI ~= 0 end
    elseif off == 2 then
      local enable = v & 1 ~= 0
      if enable ~= self.fifo then clear_rx(self) end   -- changing FCR0 resets the FIFOs
      self.fifo = enable
      if enable then
        if v & 0x02 ~= 0 then clear_rx(self) end    -- clear RX FIFO (TX is always empty)
        self.trigger = TRIGGER[v >> 6]
      end
      pull(self)
    elseif off == 3 then
      self.lcr = v
      return
    elseif off == 4 then
      local was_loop = self.mcr & MCR_LOOP ~= 0
      self.mcr = v & 0x1f
      if v & MCR_LOOP ~= 0 then
        if not was_loop then clear_rx(self, true) end    -- the input is disconnected
        set_modem_lines(self, loop_lines(self.mcr))
      elseif was_loop then
        set_modem_lines(self, MSR_DEFAULT)
        pull(self)
      end
    elseif off == 5 or off == 6 then
      return                              -- LSR and MSR are read-only here
    elseif off == 7 then
      self.scr = v
      return
    end
    if self.ier ~= 0 or self.level ~= 0 then update_irq(self) end
  end
end

-- Register read at `port` (base..base+7), with the chip's side effects;
-- other ports read 0xff.
function Uart:read(port)
  local r = self._reg
  r.port, r.write = port, false
  return self.handler(r)
end

-- Register write at `port` (other ports ignore it).
function Uart:write(port, v)
  local r = self._reg
  r.port, r.write, r.data = port, true, v
  self.handler(r)
end

function Uart:feed(s)
  if type(s) ~= "string" then error("uart:feed: expected a string, got " .. type(s), 2) end
  self.inq[#self.inq + 1] = s
  self:poll()
end

function Uart:receive(s)
  if type(s) ~= "string" then error("uart:receive: expected a string, got " .. type(s), 2) end
  for i = 1, #s do receive(self, s:byte(i)) end
  update_irq(self)
end

function Uart:poll()
  pull(self)
  update_irq(self)
end

function Uart:irq_level() return self.level end

function Uart:flush()
  if self._stdout then flush_stdout(self) end
end

function Uart:divisor() return (self.dlm << 8) | self.dll end

-- tx/rx: bytes sent and read by the guest; overruns; irqs: rising edges of
-- the interrupt; rx_fifo: bytes waiting; divisor and baud (of a 1.8432 MHz clock).
function Uart:stats()
  local d = self:divisor()
  return { tx = self.n_tx, rx = self.n_rx, overruns = self.n_overrun, irqs = self.n_irq,
           accesses = self.n_access, rx_fifo = #self.rx, fifo = self.fifo,
           divisor = d, baud = d > 0 and 115200 // d or 0 }
end

function Uart:remove()
  self:flush()
  if self.trap then self.trap:remove(); self.trap = nil end
end

return M
