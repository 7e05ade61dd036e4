-- dev_uart_spec.lua - moonvisor.dev.uart, the 8250/16550A model: divisor
-- latch, LSR, RX FIFO and overrun, loopback, IIR priorities and clearing,
-- raise_irq, input and output.  Guests store what they read at 0x3000 on.
local H = require "helpers"
local uart_mod = require "moonvisor.dev.uart"

-- nasm macros: outb port, value / inb port (into al) / save (al to [di++]).
local MACROS = [[
%macro outb 2
  mov dx, %1
  mov al, %2
  out dx, al
%endmacro
%macro inb 1
  mov dx, %1
  in al, dx
%endmacro
%macro save 0
  stosb
%endmacro
  cld
  xor ax, ax
  mov es, ax
  mov di, 0x3000
]]

local function guest(body, opts)
  local g, cpu = H.real(MACROS .. body .. "\nhlt")
  local out = {}
  opts = opts or {}
  if opts.output == nil then opts.output = function(s) out[#out + 1] = s end end
  local u = uart_mod.new(g, opts)
  return g, cpu, u, out
end

local function run(cpu)
  local e = cpu:enter()
  assert.equals("hlt", e.type)
end

local function bytes(g, n) return { g:read(0x3000, n):byte(1, n) } end

describe("uart registers", function()
  it("round-trip the divisor latch while LCR.DLAB is set, and hide it otherwise", function()
    local g, cpu, u = guest([[
      outb 0x3fb, 0x80     ; DLAB
      outb 0x3f8, 0x01     ; DLL: 115200 baud
      outb 0x3f9, 0x02     ; DLM
      inb 0x3f8
      save
      inb 0x3f9
      save
      outb 0x3fb, 0x03     ; 8N1, DLAB off
      outb 0x3f9, 0x05     ; IER
      inb 0x3f9
      save
      inb 0x3fb
      save
      outb 0x3fb, 0x83
      inb 0x3f8            ; latch unchanged by the IER write
      save
      inb 0x3f9
      save]])
    run(cpu)
    assert.same({ 0x01, 0x02, 0x05, 0x03, 0x01, 0x02 }, bytes(g, 6))
    assert.equals(0x0201, u:divisor())
    assert.equals(115200 // 0x201, u:stats().baud)
  end)

  it("keep the scratch register and MCR", function()
    local g, cpu = guest([[
      outb 0x3ff, 0xa5
      inb 0x3ff
      save
      outb 0x3fc, 0xff
      inb 0x3fc
      save]])
    run(cpu)
    assert.same({ 0xa5, 0x1f }, bytes(g, 2))
  end)

  it("transmit THR writes to output and keep LSR.THRE and TEMT set", function()
    local g, cpu, u, out = guest([[
      inb 0x3fd
      save
      outb 0x3f8, 'h'
      inb 0x3fd
      save
      mov si, msg
      mov cx, 2
      mov dx, 0x3f8
      rep outsb
      jmp done
      msg: db "i", 10
      done:]])
    run(cpu)
    assert.same({ 0x60, 0x60 }, bytes(g, 2))
    assert.equals("hi\n", table.concat(out))
    assert.equals(3, u:stats().tx)
  end)

  it("show DR while received bytes wait and clear it when they are read", function()
    local g, cpu, u = guest([[
      inb 0x3fd
      save
      inb 0x3f8
      save
      inb 0x3fd
      save
      inb 0x3f8
      save
      inb 0x3fd
      save]], { input = "AB" })
    run(cpu)
    -- no FIFO: one byte at a time, the next moves in as the first is read
    assert.same({ 0x61, 0x41, 0x61, 0x42, 0x60 }, bytes(g, 5))
    assert.equals(2, u:stats().rx)
  end)

  it("split a 16-bit access into its two byte registers", function()
    local g, cpu = guest([[
      mov dx, 0x3fb
      mov ax, 0x0380       ; LCR = 0x80 (DLAB), MCR = 0x03
      out dx, ax
      mov dx, 0x3f8
      mov ax, 0x0006       ; DLL = 6, DLM = 0
      out dx, ax
      mov dx, 0x3f8
      in ax, dx
      stosw
      mov dx, 0x3fb
      in ax, dx
      stosw]])
    run(cpu)
    assert.same({ 0x06, 0x00, 0x80, 0x03 }, bytes(g, 4))
  end)
end)

describe("uart FIFO", function()
  it("holds 16 bytes of input, reports FIFO mode in IIR bits 6-7, and drains in order", function()
    local g, cpu, u = guest([[
      inb 0x3fa            ; FIFO off
      save
      outb 0x3fa, 0x01     ; FIFO on
      inb 0x3fa
      save
      mov cx, 16
    read:
      inb 0x3f8
      save
      loop read
      inb 0x3fd
      save]], { input = ("abcdefghijklmnopqrst") })
    run(cpu)
    local b = bytes(g, 19)
    assert.equals(0x01, b[1])
    assert.equals(0xc1, b[2])
    assert.equals("abcdefghijklmnop", string.char(table.unpack(b, 3, 18)))
    assert.equals(0x61, b[19])             -- more input moved in as room appeared
    assert.equals(4, u:stats().rx_fifo)    -- "qrst" waits in the FIFO
  end)

  it("sets LSR.OE when bytes arrive at a full FIFO, drops them, and clears OE on the LSR read", function()
    local g, cpu, u = guest([[
      outb 0x3fa, 0x07     ; FIFO on, both cleared
      outb 0x3fc, 0x10     ; loopback
      mov cx, 17
      mov dx, 0x3f8
      mov al, 'a'
    send:
      out dx, al
      inc al
      loop send
      inb 0x3fd
      save
      inb 0x3fd
      save
      mov cx, 16
    read:
      inb 0x3f8
      save
      loop read
      inb 0x3fd
      save]])
    run(cpu)
    local b = bytes(g, 19)
    assert.equals(0x63, b[1])              -- DR, OE, THRE, TEMT
    assert.equals(0x61, b[2])              -- OE cleared by the read
    assert.equals("abcdefghijklmnop", string.char(table.unpack(b, 3, 18)))   -- 'q' lost
    assert.equals(0x60, b[19])
    assert.equals(1, u:stats().overruns)
  end)

  it("without FIFO overruns on the second byte, which replaces the first", function()
    local g, cpu, u = guest("")
    u:receive("xy")
    assert.equals(0x63, u:read(0x3fd))
    assert.equals(string.byte("y"), u:read(0x3f8))
    assert.equals(0x60, u:read(0x3fd))
  end)

  it("clears the RX FIFO on FCR bit 1 and when FIFO mode changes", function()
    local g, cpu, u = guest("")
    u:write(0x3fa, 0x01)
    u:receive("abc")
    assert.equals(3, u:stats().rx_fifo)
    u:write(0x3fa, 0x03)
    assert.equals(0, u:stats().rx_fifo)
    assert.equals(0x60, u:read(0x3fd))
    u:receive("abc")
    u:write(0x3fa, 0x00)
    assert.equals(0, u:stats().rx_fifo)
  end)

  it("delivers input functions and fed input without loss", function()
    local src, i = { 0x31, "23", 0x34 }, 0
    local g, cpu, u = guest("", { input = function() i = i + 1; return src[i] end })
    u:write(0x3fa, 0x01)
    local got = {}
    while u:read(0x3fd) & 1 == 1 do got[#got + 1] = string.char(u:read(0x3f8)) end
    assert.equals("1234", table.concat(got))
    u:feed("56")
    assert.equals(0x61, u:read(0x3fd))
    assert.equals(0x35, u:read(0x3f8))
    assert.equals(0x36, u:read(0x3f8))
  end)

  it("gives unread input back to the queue when the guest clears the FIFO", function()
    local g, cpu, u = guest("", { input = "xyz" })
    u:write(0x3fa, 0x01)
    assert.equals(3, u:stats().rx_fifo)
    u:write(0x3fa, 0x07)                   -- a driver's init: clear both FIFOs
    u:receive("!")                         -- bytes from the line are lost on a clear,
    u:write(0x3fa, 0x03)
    local got = {}
    while u:read(0x3fd) & 1 == 1 do got[#got + 1] = string.char(u:read(0x3f8)) end
    assert.equals("xyz", table.concat(got))   -- but the input is not
  end)
end)

describe("uart loopback", function()
  it("returns THR writes on RBR and sends nothing out", function()
    local g, cpu, u, out = guest([[
      outb 0x3fc, 0x10
      outb 0x3f8, 0x5a
      inb 0x3fd
      save
      inb 0x3f8
      save
      outb 0x3fc, 0x00
      outb 0x3f8, 'z']], { input = "Q" })
    run(cpu)
    assert.same({ 0x61, 0x5a }, bytes(g, 2))
    assert.equals("z", table.concat(out))
    -- leaving loopback reconnects the input
    assert.equals(string.byte("Q"), u:read(0x3f8))
  end)

  it("loops MCR outputs back to the MSR inputs with delta bits", function()
    local g, cpu = guest([[
      outb 0x3fc, 0x10     ; loopback, all outputs low
      inb 0x3fe
      save
      inb 0x3fe
      save
      outb 0x3fc, 0x1f     ; DTR RTS OUT1 OUT2
      inb 0x3fe
      save
      outb 0x3fc, 0x1b     ; OUT1 (RI) falls
      inb 0x3fe
      save]])
    run(cpu)
    -- DCD, DSR, CTS fall (deltas 0x0b); then all rise; then RI's trailing edge
    assert.same({ 0x0b, 0x00, 0xfb, 0xb4 }, bytes(g, 4))
  end)
end)

describe("uart interrupts", function()
  it("report THR empty once enabled, cleared by reading IIR", function()
    local g, cpu = guest([[
      inb 0x3fa
      save
      outb 0x3f9, 0x02     ; ETBEI
      inb 0x3fa
      save
      inb 0x3fa
      save
      outb 0x3f8, '.'      ; a write makes THR empty again
      inb 0x3fa
      save]])
    run(cpu)
    assert.same({ 0x01, 0x02, 0x01, 0x02 }, bytes(g, 4))
  end)

  it("order line status > received data > THR empty > modem status", function()
    local g, cpu, u = guest("")
    u:write(0x3f9, 0x0f)                   -- every source
    u:write(0x3fc, 0x10)                   -- loopback: MSR deltas pending
    u:receive("ab")                        -- no FIFO: overrun
    assert.equals(0x06, u:read(0x3fa))     -- line status
    assert.equals(0x63, u:read(0x3fd))     -- reading LSR clears it
    assert.equals(0x04, u:read(0x3fa))     -- received data
    u:read(0x3f8)
    assert.equals(0x02, u:read(0x3fa))     -- THR empty, cleared by this read
    assert.equals(0x00, u:read(0x3fa))     -- modem status
    u:read(0x3fe)
    assert.equals(0x01, u:read(0x3fa))     -- none
  end)

  it("show the character timeout below the FIFO trigger level, data available at it", function()
    local g, cpu, u = guest("")
    u:write(0x3fa, 0x41)                   -- FIFO, trigger 4
    u:write(0x3f9, 0x01)
    u:receive("abc")
    assert.equals(0xcc, u:read(0x3fa))
    u:receive("d")
    assert.equals(0xc4, u:read(0x3fa))
  end)

  it("call raise_irq with level 1 then 0, on changes only", function()
    local calls = {}
    local g, cpu = guest([[
      outb 0x3f9, 0x01     ; ERBFI: input waits, so the line goes up
      inb 0x3fa
      save
      inb 0x3f8            ; read it: down
      save
      inb 0x3fa
      save]], { irq = 3, input = "k", raise_irq = function(line, level)
        calls[#calls + 1] = line .. ":" .. level
      end })
    run(cpu)
    assert.same({ 0x04, string.byte("k"), 0x01 }, bytes(g, 3))
    assert.same({ "3:1", "3:0" }, calls)
  end)

  it("lower and raise the line around each THR write (an edge per byte)", function()
    local calls = {}
    local g, cpu, u = guest([[
      outb 0x3f9, 0x02
      outb 0x3f8, 'a'
      outb 0x3f9, 0x00]], { raise_irq = function(line, level) calls[#calls + 1] = level end })
    run(cpu)
    assert.same({ 1, 0, 1, 0 }, calls)
    assert.equals(2, u:stats().irqs)
    assert.equals(0, u:irq_level())
  end)

  it("raise the line when input is fed later, for a guest waiting on interrupts", function()
    local level
    local g, cpu, u = guest("", { raise_irq = function(_, l) level = l end })
    u:write(0x3f9, 0x01)
    assert.is_nil(level)
    u:feed("x")
    assert.equals(1, level)
  end)
end)

-- Runs fn(u, written) with a UART on its default output and io.stdout
-- replaced by a recorder: written holds each string the sink wrote.
local function with_stdout(fn)
  local g = H.guest()
  local written = {}
  local real = io.stdout
  io.stdout = { write = function(_, s) written[#written + 1] = s end, flush = function() end }
  local ok, err = pcall(fn, uart_mod.new(g), written)
  io.stdout = real
  assert(ok, err)
end

describe("uart object", function()
  it("buffers default output up to a newline and flushes on flush()", function()
    with_stdout(function(u, written)
      u:write(0x3f8, 0x41)
      assert.same({}, written)
      u:write(0x3f8, 0x0a)
      assert.same({ "A\n" }, written)
      u:write(0x3f8, 0x42)
      u:flush()
      assert.same({ "A\n", "B" }, written)
    end)
  end)

  it("writes default output in 4 KiB pieces without a newline, and through out() as well", function()
    with_stdout(function(u, written)
      for i = 1, 4097 do u:write(0x3f8, 0x61 + i % 26) end
      assert.equals(1, #written)
      assert.equals(4096, #written[1])
      assert.equals("bcd", written[1]:sub(1, 3))
      u.out("xy\n")              -- the sink as a string function: the byte waiting, then these
      assert.same({ "p", "xy\n" }, { written[2]:sub(1, 1), written[2]:sub(2) })
      assert.equals(4097, u:stats().tx)
    end)
  end)

  it("sends bytes to an output set on the object later, as strings, and to tap", function()
    local got, tapped = {}, {}
    with_stdout(function(u, written)
      u:write(0x3f8, 0x41)
      u:flush()
      u.out = function(s) got[#got + 1] = s end
      u.tap = function(b) tapped[#tapped + 1] = b end
      u:write(0x3f8, 0x42)
      u:write(0x3f8, 0x0a)
      u:flush()
      assert.same({ "A" }, written)
    end)
    assert.same({ "B", "\n" }, got)
    assert.same({ 0x42, 0x0a }, tapped)
  end)

  it("removes its trap", function()
    local g, cpu, u = guest("inb 0x3fd\nhlt")
    u:remove()
    local e = cpu:enter()
    assert.equals("io", e.type)
    assert.equals(0x3fd, e.port)
    u:remove()
  end)

  it("sits at another base", function()
    local g, cpu, u = guest("inb 0x2fd\nsave", { base = 0x2f8 })
    run(cpu)
    assert.same({ 0x60 }, bytes(g, 1))
  end)
end)
