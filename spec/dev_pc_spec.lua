-- dev_pc_spec.lua - the register files of the devices moonvisor.pc adds:
-- moonvisor.dev.acpi_pm (PM1 status/enable/control, sleep types, the PM
-- timer, GPE0), .pci_host (configuration mechanism #1, the i440FX, 0xCF9),
-- .debug_exit, .port92, .irqchip, .vga and the CMOS bytes QEMU fills; and
-- that random accesses to any of them never raise.
local H = require "helpers"
local mv = require "moonvisor"

describe("acpi_pm", function()
  local acpi_pm = require "moonvisor.dev.acpi_pm"
  local function pm_with_clock(opts)
    local now = 0
    opts = opts or {}
    opts.clock = function() return now end
    local pm = acpi_pm.new(nil, opts)
    return pm, function(s) now = s end
  end

  it("counts the PM timer at 3.579545 MHz in 24 bits", function()
    local pm, set = pm_with_clock()
    assert.equals(0, pm:read(0xb008, 4))
    set(1)
    assert.equals(3579545, pm:read(0xb008, 4))
    set(10)
    assert.equals(35795450 & 0xffffff, pm:read(0xb008, 4))
    assert.equals((35795450 >> 8) & 0xff, pm:read(0xb009, 1))
    pm:write(0xb008, 0, 4)                              -- read-only
    assert.equals(35795450 & 0xffffff, pm:read(0xb008, 4))
  end)

  it("counts from `start` when given (a value of its clock), and refuses a start that is no number", function()
    local pm, set = pm_with_clock{ start = -2 }
    assert.equals(2 * 3579545, pm:read(0xb008, 4))
    set(1)
    assert.equals(3 * 3579545, pm:read(0xb008, 4))
    assert.has_error(function() acpi_pm.new(nil, { start = "now" }) end,
                     "acpi_pm.new: start must be a number (a value of the clock), got string")
  end)

  it("sets TMR_STS when the timer's bit 23 flips, cleared by writing 1", function()
    local pm, set = pm_with_clock()
    assert.equals(0, pm:read(0xb000, 2))
    set(0x800000 / 3579545 + 0.001)
    assert.equals(1, pm:read(0xb000, 2))
    pm:write(0xb000, 1, 2)
    assert.equals(0, pm:read(0xb000, 2))
  end)

  it("reads SCI_EN in PM1 control and keeps SLP_TYP; SLP_EN reads 0", function()
    local pm = acpi_pm.new(nil)
    assert.equals(1, pm:read(0xb004, 2))
    pm:write(0xb004, 5 << 10, 2)
    assert.equals((5 << 10) | 1, pm:read(0xb004, 2))
  end)

  it("decodes SLP_EN with SLP_TYP 0 as S5, 1 as S3, 2 as S4 and ignores the others", function()
    local got = {}
    local pm = acpi_pm.new(nil, { on_sleep = function(state, typ) got[#got + 1] = state .. ":" .. typ end })
    for typ = 0, 7 do pm:write(0xb004, (typ << 10) | (1 << 13), 2) end
    assert.same({ "S5:0", "S3:1", "S4:2" }, got)
    assert.same({ 3, 5, "S4" }, { pm:stats().sleeps, pm:stats().ignored_sleeps, pm:stats().last_sleep })
    assert.equals(0x8000, pm:read(0xb000, 2) & 0x8000)   -- WAK_STS after a sleep
  end)

  it("takes a byte write of the high control byte with SLP_EN as the sleep, SLP_TYP from the same byte", function()
    local got
    local pm = acpi_pm.new(nil, { on_sleep = function(state) got = state end })
    pm:write(0xb005, (1 << 2) | (1 << 5), 1)            -- SLP_TYP 1, SLP_EN
    assert.equals("S3", got)
  end)

  it("raises the SCI while the power button status is set and enabled", function()
    local lines = {}
    local pm = acpi_pm.new(nil, { raise_irq = function(l, v) lines[#lines + 1] = l .. "=" .. v end })
    pm:power_button()
    assert.same({}, lines)
    pm:write(0xb002, 0x0100, 2)                         -- PWRBTN_EN
    assert.same({ "9=1" }, lines)
    assert.equals(0x0100, pm:read(0xb000, 2) & 0x0100)
    pm:write(0xb000, 0x0100, 2)                         -- clear
    assert.same({ "9=1", "9=0" }, lines)
  end)

  it("keeps GPE0 enable bits and clears status bits written with 1", function()
    local pm = acpi_pm.new(nil)
    pm:write(0xafe2, 0xabcd, 2)
    assert.equals(0xabcd0000, pm:read(0xafe0, 4))
    pm.gpe_sts = 0x3
    pm:write(0xafe0, 1, 1)
    assert.equals(2, pm:read(0xafe0, 1))
  end)
end)

describe("pci_host", function()
  local pci_host = require "moonvisor.dev.pci_host"
  local function cfg(pci, dev, fn, reg, size, port_off)
    pci:write(0xcf8, 0x80000000 | (dev << 11) | (fn << 8) | reg, 4)
    return pci:read(0xcfc + (port_off or 0), size or 4)
  end

  it("has an i440FX host bridge at 00:00.0: IDs, class, status, subsystem", function()
    local pci = pci_host.new(nil)
    assert.equals(0x12378086, cfg(pci, 0, 0, 0))
    assert.equals(0x02800000, cfg(pci, 0, 0, 4))       -- status 0x0280, command 0
    assert.equals(0x06000002, cfg(pci, 0, 0, 8))       -- class 06 00 00, revision 2
    assert.equals(0, cfg(pci, 0, 0, 0x0c) >> 16 & 0xff) -- header type 0
    assert.equals(0x11001af4, cfg(pci, 0, 0, 0x2c))
    assert.equals(0x8086, cfg(pci, 0, 0, 0, 2))
    assert.equals(0x12, cfg(pci, 0, 0, 0, 1, 3))
  end)

  it("reads all-ones for empty slots, other buses and with the enable bit clear", function()
    local pci = pci_host.new(nil)
    assert.equals(0xffffffff, cfg(pci, 1, 0, 0))
    pci:write(0xcf8, 0x80010000, 4)                     -- bus 1
    assert.equals(0xffffffff, pci:read(0xcfc, 4))
    pci:write(0xcf8, 0x00000000, 4)
    assert.equals(0xffff, pci:read(0xcfc, 2))
    assert.equals(2, pci:stats().absent)                -- (with the enable bit clear no function is asked)
  end)

  it("keeps writes to the command register and device-specific space, not to IDs or BARs", function()
    local pci = pci_host.new(nil)
    pci:write(0xcf8, 0x80000000, 4)
    pci:write(0xcfc, 0xffffffff, 4)                     -- IDs: read-only
    assert.equals(0x12378086, pci:read(0xcfc, 4))
    pci:write(0xcf8, 0x80000004, 4)
    pci:write(0xcfc, 0x0007, 2)
    assert.equals(0x02800007, pci:read(0xcfc, 4))
    pci:write(0xcf8, 0x80000010, 4)
    pci:write(0xcfc, 0xfffffff0, 4)
    assert.equals(0, pci:read(0xcfc, 4))
    pci:write(0xcf8, 0x80000058, 4)                     -- PAM0..
    pci:write(0xcfd, 0x33, 1)
    assert.equals(0x3300, pci:read(0xcfc, 4))
  end)

  it("reads the address register back without bits 0-1; narrow accesses to 0xCF8 read all-ones", function()
    local pci = pci_host.new(nil)
    pci:write(0xcf8, 0x8000ff07, 4)
    assert.equals(0x8000ff04, pci:read(0xcf8, 4))
    assert.equals(0xff, pci:read(0xcf8, 1))
    pci:write(0xcf8, 0x12, 1)
    assert.equals(0x8000ff04, pci:read(0xcf8, 4))
  end)

  it("resets through 0xCF9 bit 2 and keeps only the system-reset bit", function()
    local got = {}
    local pci = pci_host.new(nil, { on_reset = function(cause) got[#got + 1] = cause end })
    pci:write(0xcf9, 0x0a, 1)
    assert.equals(0x02, pci:read(0xcf9, 1))
    pci:write(0xcf9, 0x06, 1)
    assert.same({ "0xcf9" }, got)
    assert.equals(1, pci:stats().resets)
  end)

  it("takes more functions with pci:add", function()
    local pci = pci_host.new(nil, { host_bridge = false })
    assert.equals(0xffffffff, cfg(pci, 0, 0, 0))
    pci:add(3, 1, { vendor = 0x1af4, device = 0x1000, class = 0x020000 })
    assert.equals(0x10001af4, cfg(pci, 3, 1, 0))
    assert.has_error(function() pci:add(32, 0, { vendor = 1, device = 1 }) end,
      "pci_host:add: device 0-31 and function 0-7, got 32.0")
  end)
end)

describe("debug_exit", function()
  local debug_exit = require "moonvisor.dev.debug_exit"
  it("records (value << 1) | 1 for a write of any size at any of its ports; reads are 0", function()
    local got = {}
    local dx = debug_exit.new(nil, { on_exit = function(v, s) got[#got + 1] = { v, s } end })
    dx:write(0xf4, 0x10, 1)
    dx:write(0xf6, 0x1234, 2)
    dx:write(0xf4, 0x1ff, 1)                           -- a byte write sees the byte
    assert.same({ { 0x10, 0x21 }, { 0x1234, 0x2469 }, { 0xff, 0x1ff } }, got)
    assert.equals(0, dx:read(0xf4, 4))
    assert.same({ writes = 3, value = 0xff, status = 0x1ff }, dx:stats())
  end)

  it("refuses ports outside 0..0xffff", function()
    assert.has_error(function() debug_exit.new(nil, { iobase = 0xfffe, iosize = 4 }) end,
      "debug_exit.new: iosize must be 1..2, got 4")
  end)
end)

describe("port92", function()
  it("reads A20 set, and resets on bit 0's rising edge", function()
    local got = 0
    local p = require("moonvisor.dev.port92").new(nil, { on_reset = function() got = got + 1 end })
    assert.equals(0x02, p:read(0x92, 1))
    p:write(0x92, 0x03, 1)
    assert.equals(1, got)
    assert.equals(0x02, p:read(0x92, 1))               -- bit 0 does not stick
    p:write(0x92, 0x00, 1)
    assert.is_false(p.a20)
    assert.equals(0xff00, p:read(0x92, 2))
  end)
end)

describe("irqchip", function()
  local irqchip = require "moonvisor.dev.irqchip"
  it("records raises and levels per line; without the in-kernel chip it delivers nothing", function()
    local ic = irqchip.new(nil, { in_kernel = false })
    ic:irq(4, 1)
    ic:irq(4, 1)
    ic:irq(4, 0)
    ic:irq(4, 1)
    assert.same({ delivered = false, lines = { [4] = { raises = 2, level = 1 } } }, ic:stats())
  end)

  it("writes the virtual wire stub: SVR, LINT0 ExtINT, LINT1 NMI, then the handover POST code", function()
    local code = irqchip.virtual_wire_stub(0xfe)
    assert.equals(irqchip.STUB_HANDOVER + 2, #code)
    assert.equals("\xc7\x05" .. string.pack("<I4I4", 0xfee000f0, 0x1ff), code:sub(1, 10))
    assert.equals("\xc7\x05" .. string.pack("<I4I4", 0xfee00350, 0x8700), code:sub(11, 20))
    assert.equals("\xc7\x05" .. string.pack("<I4I4", 0xfee00360, 0x400), code:sub(21, 30))
    assert.equals("\xb0\xfe\xe6\x80\xfa\xf4", code:sub(31))      -- mov al, 0xfe; out 0x80, al; cli; hlt
  end)
end)

describe("vga", function()
  it("reads the 80x25 text page at 0xB8000 as lines", function()
    local g = H.guest()
    g:map(0, mv.vmo(0x100000))
    g:write(0xb8000, "H\7i\7")
    g:write(0xb8000 + 160 * 2, "!\7")
    local vga = require("moonvisor.dev.vga").new(g)
    assert.same({ "Hi", "", "!" }, vga:text())
    assert.same({ "H", 7 }, { vga:cell(0, 0) })
  end)
end)

describe("cmos (QEMU's memory and CPU bytes)", function()
  it("fills 0x5b-0x5d with RAM above 4 GiB in 64 KiB units and 0x5f with cpus - 1", function()
    local c = require("moonvisor.dev.cmos").new(H.real("hlt"), { mem_size = 0xc0000000, above_4g = 0x140000000, cpus = 4 })
    assert.same({ 0x00, 0x40, 0x01 }, { c:get(0x5b), c:get(0x5c), c:get(0x5d) })
    assert.equals(3, c:get(0x5f))
    assert.equals((0xc0000000 - 0x1000000) >> 16, c:get(0x34) | c:get(0x35) << 8)
  end)
end)

describe("the PC devices", function()
  it("never raise on random accesses", function()
    local devs = {
      { require("moonvisor.dev.acpi_pm").new(nil), 0xafd0, 0xb050 },
      { require("moonvisor.dev.pci_host").new(nil), 0xcf6, 0xd00 },
      { require("moonvisor.dev.debug_exit").new(nil), 0xf0, 0xf8 },
      { require("moonvisor.dev.port92").new(nil), 0x92, 0x92 },
    }
    math.randomseed(11)
    for _, d in ipairs(devs) do
      for _ = 1, 3000 do
        local port, size = math.random(d[2], d[3]), ({ 1, 2, 4 })[math.random(3)]
        if math.random(2) == 1 then d[1]:write(port, math.random(0, 0xffffffff), size)
        else
          local v = d[1]:read(port, size)
          assert.is_true(math.type(v) == "integer" and v >= 0 and v < (1 << (8 * size)))
        end
      end
    end
  end)
end)
