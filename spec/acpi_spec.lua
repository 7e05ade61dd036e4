-- acpi_spec.lua - moonvisor.acpi: the tables built from a configuration,
-- parsed back by moonvisor.acpi_read: where the RSDP is found, every checksum, the RSDT/XSDT
-- entries, the MADT's entries per CPU, the FADT's blocks, the DSDT's \_S5_,
-- the FACS; and the machine's own tables read from guest memory.
local H = require "helpers"
local acpi = require "moonvisor.acpi"
local acpi_read = require "moonvisor.acpi_read"
local sum8 = require("moonvisor").sum8

-- A reader over a blob placed at base (zeros elsewhere), as guest memory.
local function reader(t)
  local mem = t.bytes
  return function(a, n)
    local out = {}
    for i = 0, n - 1 do
      local off = a + i - t.base
      out[#out + 1] = (off >= 0 and off < #mem) and mem:sub(off + 1, off + 1) or "\0"
    end
    return table.concat(out)
  end
end

describe("acpi.build", function()
  it("lays the tables out in one blob from base, the RSDP first, each 16-byte aligned (FACS 64)", function()
    local t = acpi.build{ base = 0xe0000, cpus = 2 }
    assert.equals(0xe0000, t.rsdp)
    assert.same({ FACS = 0xe0040, DSDT = 0xe0080, FACP = 0xe00b0, APIC = 0xe01b0, RSDT = 0xe0200, XSDT = 0xe0230 },
                t.tables)
    assert.equals(t.size, #t.bytes)
    assert.equals(0xe0230 + 36 + 16 - 0xe0000, t.size)
  end)

  it("is found where an OS searches and every checksum adds up", function()
    local t = acpi.build{ base = 0xf5a40, cpus = 1 }
    local p = acpi_read.parse(reader(t), acpi_read.find_rsdp(reader(t)))
    assert.equals(0xf5a40, p.rsdp.addr)
    assert.is_true(p.rsdp.checksum_ok)
    assert.is_true(p.rsdp.ext_checksum_ok)
    assert.same({ 2, 36 }, { p.rsdp.revision, p.rsdp.length })
    for _, sig in ipairs{ "RSDT", "XSDT", "FACP", "APIC", "DSDT" } do
      assert.is_true(p.tables[sig].checksum_ok, sig)
      assert.equals("MOONVS", p.tables[sig].header.oem_id)
    end
    assert.same({ "FACP", "APIC" }, p.list)
    assert.same({ t.tables.FACP, t.tables.APIC }, p.tables.RSDT.entries)
    assert.same({ t.tables.FACP, t.tables.APIC }, p.tables.XSDT.entries)
  end)

  for _, n in ipairs{ 1, 4, 255 } do
    it(("lists one enabled local APIC per CPU in the MADT (%d CPUs), then the I/O APIC, overrides and LINT1 NMI"):format(n), function()
      local t = acpi.build{ base = 0xe0000, cpus = n, overrides = { { source = 9, gsi = 9, flags = 0xd } } }
      local madt = acpi_read.parse(reader(t), t.rsdp).tables.APIC
      assert.is_true(madt.checksum_ok)
      assert.equals(0xfee00000, madt.madt.lapic_addr)
      assert.equals(1, madt.madt.flags)                 -- PCAT_COMPAT
      local e = madt.madt.entries
      assert.equals(n + 3, #e)
      for i = 1, n do
        assert.same({ type = 0, length = 8, kind = "lapic", uid = i - 1, apic_id = i - 1, flags = 1 }, e[i])
      end
      assert.same({ type = 1, length = 12, kind = "ioapic", id = 0, addr = 0xfec00000, gsi_base = 0 }, e[n + 1])
      assert.same({ type = 2, length = 10, kind = "override", bus = 0, source = 9, gsi = 9, flags = 0xd }, e[n + 2])
      assert.same({ type = 4, length = 6, kind = "lapic_nmi", uid = 0xff, flags = 0, lint = 1 }, e[n + 3])
      assert.equals(36 + 8 + 8 * n + 12 + 10 + 6, madt.header.length)
    end)
  end

  it("describes the PM blocks, the timer, the reset register and the DSDT/FACS in the FADT", function()
    local t = acpi.build{ base = 0xe0000 }
    local p = acpi_read.parse(reader(t), t.rsdp)
    local f = p.tables.FACP.fadt
    assert.equals(244, p.tables.FACP.header.length)
    assert.equals(3, p.tables.FACP.header.revision)
    assert.same({ t.tables.FACS, t.tables.DSDT, 9, 0 }, { f.firmware_ctrl, f.dsdt, f.sci_int, f.smi_cmd })
    assert.same({ 0xb000, 0xb004, 0xb008, 0xafe0 }, { f.pm1a_evt_blk, f.pm1a_cnt_blk, f.pm_tmr_blk, f.gpe0_blk })
    assert.same({ 4, 2, 4, 4 }, { f.pm1_evt_len, f.pm1_cnt_len, f.pm_tmr_len, f.gpe0_blk_len })
    assert.same({ 0x0fff, 0x0fff, 0x32, 3 }, { f.p_lvl2_lat, f.p_lvl3_lat, f.century, f.iapc_boot_arch })
    assert.equals((1 << 0) | (1 << 2) | (1 << 4) | (1 << 5) | (1 << 10) | (1 << 15), f.flags)
    assert.same({ space = 1, bits = 8, offset = 0, access = 1, address = 0xcf9 }, f.reset_reg)
    assert.equals(6, f.reset_value)
    assert.same({ t.tables.FACS, t.tables.DSDT }, { f.x_firmware_ctrl, f.x_dsdt })
    assert.same({ space = 1, bits = 32, offset = 0, access = 0, address = 0xb008 }, f.x_pm_tmr_blk)
    assert.same({ space = 1, bits = 16, offset = 0, access = 0, address = 0xb004 }, f.x_pm1a_cnt_blk)
    assert.same({ "FACS", 64, 2 }, { p.tables.FACS.signature, p.tables.FACS.length, p.tables.FACS.version })
  end)

  it("puts Name(_S5_, Package { typ, typ, 0, 0 }) in the DSDT", function()
    local dsdt = acpi_read.parse(reader(acpi.build{ base = 0xe0000 }), 0xe0000).tables.DSDT
    assert.equals("\x08_S5_\x12\x06\x04\x00\x00\x00\x00", dsdt.bytes:sub(37))
    dsdt = acpi_read.parse(reader(acpi.build{ base = 0xe0000, s5 = 7 }), 0xe0000).tables.DSDT
    assert.equals("\x08_S5_\x12\x08\x04\x0a\x07\x0a\x07\x00\x00", dsdt.bytes:sub(37))
    assert.is_true(dsdt.checksum_ok)
  end)

  it("refuses a base that is not a 16-byte aligned 32-bit address and CPU counts out of 1..255", function()
    assert.has_error(function() acpi.build{ base = 0xe0008 } end,
      "acpi.build: base must be a 16-byte aligned 32-bit address, got 917512")
    assert.has_error(function() acpi.build{ base = 0xe0000, cpus = 0 } end, "acpi.build: cpus must be 1..255 (xAPIC IDs), got 0")
    assert.has_error(function() acpi.build{ base = 0xe0000, cpus = 256 } end, "acpi.build: cpus must be 1..255 (xAPIC IDs), got 256")
  end)

  it("says where a pointer leads nowhere", function()
    local t = acpi.build{ base = 0xe0000 }
    local read = reader(t)
    assert.has_error(function()
      acpi_read.parse(function(a, n) if a >= t.tables.XSDT then error("unmapped") end return read(a, n) end, t.rsdp)
    end, "acpi_read.parse: cannot read the XSDT at 0xe0230+0x24")
    assert.is_nil(acpi_read.find_rsdp(function(_, n) return ("\0"):rep(n) end))
  end)
end)

describe("a moonvisor.pc machine's ACPI tables", function()
  local pc = require "moonvisor.pc"
  it("are in guest memory from 0xe0000, found through the EBDA search's fallback, for 3 CPUs", function()
    local m <close> = pc.new{ mem = 16 << 20, cpus = 3 }
    local g = m.g
    local read = function(a, n) return g:read(a, n) end
    assert.equals(0xe0000, acpi_read.find_rsdp(read))
    local p = acpi_read.parse(read, 0xe0000)
    local lapics, overrides = 0, {}
    for _, e in ipairs(p.tables.APIC.madt.entries) do
      if e.kind == "lapic" then lapics = lapics + 1 end
      if e.kind == "override" then overrides[#overrides + 1] = e.source end
    end
    assert.equals(3, lapics)
    assert.same({ 5, 9, 10, 11 }, overrides)        -- no IRQ 0 override: KVM routes GSI 0 to pin 0
    for _, t in pairs(p.tables) do if t.checksum_ok ~= nil then assert.is_true(t.checksum_ok) end end
    assert.same({ addr = 0xe0000, size = m.acpi.size, what = "the ACPI tables" }, m.reserved[3])
  end)
end)

describe("mv.sum8, the tables' checksum", function()
  it("is the sum of the bytes mod 256, at every short length and for long strings", function()
    for _, n in ipairs{ 0, 1, 2, 7, 8, 9, 15, 16, 17, 40, 255, 256, 257, 1000, 70000 } do
      local b, sum = {}, 0
      for i = 1, n do
        local v = (i * 131 + n * 7) % 256
        b[i] = string.char(v)
        sum = sum + v
      end
      assert.equals(sum % 256, sum8(table.concat(b)), "length " .. n)
    end
    assert.equals(0x10000 * 255 % 256, sum8(string.rep("\255", 0x10000)))
  end)

  it("sums s[i..j] with i and j counted as string.sub counts them, clamped to the string", function()
    local s = "\1\2\4\8\16\32"
    assert.equals(2 + 4 + 8, sum8(s, 2, 4))
    assert.equals(2 + 4 + 8 + 16 + 32, sum8(s, 2))
    assert.equals(16 + 32, sum8(s, -2))
    assert.equals(1 + 2, sum8(s, 0, 2))
    assert.equals(63, sum8(s, -100, 100))
    assert.equals(0, sum8(s, 4, 3))
    assert.equals(0, sum8(s, 7))
    assert.equals(0, sum8(""))
  end)

  it("refuses what is not a string, naming the argument", function()
    assert.has_error(function() sum8(nil) end, "bad argument #1 to 'sum8' (string expected, got nil)")
    assert.has_error(function() sum8("ab", "x") end, "bad argument #2 to 'sum8' (number expected, got string)")
  end)

  it("makes every table of a machine with many CPUs add up (a MADT longer than 256 bytes)", function()
    local t = acpi.build{ base = 0xe0000, cpus = 64 }
    local p = acpi_read.parse(reader(t), t.rsdp)
    assert.is_true(#p.tables.APIC.bytes > 256)
    for sig, tab in pairs(p.tables) do   -- summed here byte by byte, not with sum8
      if tab.checksum_ok ~= nil then
        local sum = 0
        for i = 1, #tab.bytes do sum = sum + tab.bytes:byte(i) end
        assert.equals(0, sum % 256, sig)
      end
    end
  end)
end)
