-- moonvisor.acpi: ACPI tables made in Lua from a machine's configuration.
-- moonvisor.acpi_read reads them back.
--
--   local acpi = require "moonvisor.acpi"
--   local t = acpi.build{ base = 0xE0000, cpus = 2, ... }    (fields below)
--   --> { bytes, base, size, rsdp, tables = { RSDT =, XSDT =, FACP =, FACS =, DSDT =, APIC = } }
--   g:write(t.base, t.bytes)
--
-- What acpi.build makes (ACPI 2.0 layouts, little-endian, each table
-- 16-byte aligned in one blob at `base`):
-- * RSDP, revision 2 (36 bytes, at base: put it where the spec says an OS
--   looks, the first KiB of the EBDA or 0xE0000-0xFFFFF on a 16-byte
--   boundary), pointing to both the RSDT and the XSDT.
-- * RSDT and XSDT listing FACP (the FADT) and APIC (the MADT).
-- * FADT revision 3 (244 bytes): FACS and DSDT (32- and 64-bit fields),
--   SCI interrupt, PM1a event/control blocks, PM timer, GPE0 block, both as
--   legacy ports and as generic addresses, no SMI command port (ACPI mode is
--   on from the start: PM1 control reads SCI_EN), C2/C3 latencies meaning
--   "not supported", century at CMOS 0x32, IA-PC boot flags legacy devices
--   and 8042, flags WBINVD, C1, no fixed power/sleep button, reset register
--   supported, platform clock; RESET_REG a system-io byte at `reset.port`
--   with `reset.value`.
-- * FACS (64 bytes, 64-byte aligned), version 2, no waking vector.
-- * DSDT: one object, \_S5_ = Package { s5, s5, 0, 0 }: the SLP_TYP value
--   for soft-off that the PM1 control register decodes.
-- * MADT: local APIC address and PCAT_COMPAT (8259s present); one Processor
--   Local APIC per CPU (UID = APIC ID = 0..cpus-1, enabled); one I/O APIC;
--   the interrupt source overrides given; one Local APIC NMI (all
--   processors, LINT1).
local M = {}

M.RSDP_SIZE = 36
M.HEADER_SIZE = 36

local function hex(n) return ("0x%x"):format(n) end
local function align(n, a) return (n + a - 1) // a * a end

local pack = string.pack
local sum8 = require("moonvisor.core").sum8   -- (a sum in Lua cost ~100 instructions a byte)

local function pad(s, n) return (s .. string.rep(" ", n)):sub(1, n) end

-- A table: header + body, with the checksum (byte 10) that makes all its
-- bytes sum to 0 mod 256.  c holds the padded OEM fields.
local HEADER <const> = "<c4I4BBc6c8I4c4I4"
local function sdt(sig, revision, body, c)
  local len = M.HEADER_SIZE + #body
  local sum = sum8(pack(HEADER, sig, len, revision, 0, c.oem_id, c.oem_table_id, c.oem_revision, c.creator_id,
                        c.creator_revision)) + sum8(body)
  return pack(HEADER, sig, len, revision, -sum & 0xff, c.oem_id, c.oem_table_id, c.oem_revision, c.creator_id,
              c.creator_revision) .. body
end

-- The RSDP: its first 20 bytes sum to 0 (checksum, byte 9), and all 36
-- (extended checksum, byte 33).
local function rsdp(oem_id, rsdt, xsdt)
  local v1 = "<c8Bc6BI4"
  local first = pack(v1, "RSD PTR ", 0, oem_id, 2, rsdt)
  first = pack(v1, "RSD PTR ", -sum8(first) & 0xff, oem_id, 2, rsdt)
  local v2 = "<I4I8Bc3"
  local rest = pack(v2, M.RSDP_SIZE, xsdt, 0, "\0\0\0")
  return first .. pack(v2, M.RSDP_SIZE, xsdt, -sum8(rest) & 0xff, "\0\0\0")
end

-- The FADT's body after the header, packed at once: one piece of the
-- format per line of values in M.build.  G is a Generic Address Structure:
-- address space (1 = system io), bit width, bit offset, access size, address.
local G <const> = "BBBBI8"
local FADT = "<I4I4BBI2I4BBBB" .. "I4I4I4I4I4I4I4I4" .. "BBBBBBBB" .. "I2I2I2I2BBBBBI2B" .. "I4" .. G .. "Bc3"
  .. "I8I8" .. G .. G .. G .. G .. G .. G .. G .. G

-- AML for an integer constant.
local function aml_int(v)
  if v == 0 then return "\0" end
  if v == 1 then return "\1" end
  if v <= 0xff then return "\x0a" .. string.char(v) end
  if v <= 0xffff then return "\x0b" .. pack("<I2", v) end
  return "\x0c" .. pack("<I4", v)
end

-- Name(_S5_, Package() { typ, typ, 0, 0 })
local function aml_s5(typ)
  local elems = aml_int(typ) .. aml_int(typ) .. "\0\0"
  local body = "\4" .. elems                   -- NumElements, elements
  assert(#body + 1 < 64)                        -- one-byte PkgLength
  return "\x08_S5_\x12" .. string.char(#body + 1) .. body
end

local DEFAULTS = {
  cpus = 1, lapic_addr = 0xFEE00000,
  ioapic = { id = 0, addr = 0xFEC00000, gsi_base = 0 },
  overrides = {},
  nmi = { uid = 0xff, flags = 0, lint = 1 },
  pm = { evt = 0xb000, cnt = 0xb004, tmr = 0xb008, gpe0 = 0xafe0, gpe0_len = 4, sci = 9 },
  reset = { port = 0xcf9, value = 0x06 },
  s5 = 0, century = 0x32,
  oem_id = "MOONVS", oem_table_id = "MOONVSPC", oem_revision = 1, creator_id = "MVLU", creator_revision = 1,
}

-- acpi.build{ base, cpus, lapic_addr, ioapic = { id, addr, gsi_base },
--   overrides = { { source, gsi, flags } }, nmi = { uid, flags, lint } or false,
--   pm = { evt, cnt, tmr, gpe0, gpe0_len, sci }, reset = { port, value },
--   s5, century, oem_id, oem_table_id, ... } -> the blob and where each table is.
function M.build(cfg)
  if type(cfg) ~= "table" then error("acpi.build: expected a table, got " .. type(cfg), 2) end
  local base = cfg.base
  if math.type(base) ~= "integer" or base < 0 or base % 16 ~= 0 or base > 0xffffffff then
    error("acpi.build: base must be a 16-byte aligned 32-bit address, got " .. tostring(base), 2)
  end
  local c = {}
  for k, default in pairs(DEFAULTS) do
    local v = cfg[k]
    if v == nil then v = default end
    c[k] = v
  end
  if math.type(c.cpus) ~= "integer" or c.cpus < 1 or c.cpus > 255 then
    error("acpi.build: cpus must be 1..255 (xAPIC IDs), got " .. tostring(c.cpus), 2)
  end
  c.oem_id, c.oem_table_id, c.creator_id = pad(c.oem_id, 6), pad(c.oem_table_id, 8), pad(c.creator_id, 4)

  -- Bodies first; addresses are assigned in order, then the pointers filled in.
  local order = { "RSDP", "FACS", "DSDT", "FACP", "APIC", "RSDT", "XSDT" }
  local size = { RSDP = M.RSDP_SIZE, FACS = 64 }
  local madt = { pack("<I4I4", c.lapic_addr, 1) }        -- PCAT_COMPAT
  for i = 0, c.cpus - 1 do madt[#madt + 1] = pack("<BBBBI4", 0, 8, i, i, 1) end
  local io = c.ioapic
  madt[#madt + 1] = pack("<BBBBI4I4", 1, 12, io.id, 0, io.addr, io.gsi_base)
  for _, o in ipairs(c.overrides) do
    madt[#madt + 1] = pack("<BBBBI4I2", 2, 10, 0, o.source, o.gsi, o.flags or 0)
  end
  if c.nmi then madt[#madt + 1] = pack("<BBBI2B", 4, 6, c.nmi.uid, c.nmi.flags, c.nmi.lint) end
  local madt_body = table.concat(madt)
  local dsdt_body = aml_s5(c.s5)
  size.DSDT = M.HEADER_SIZE + #dsdt_body
  size.FACP = 244
  size.APIC = M.HEADER_SIZE + #madt_body
  size.RSDT = M.HEADER_SIZE + 4 * 2
  size.XSDT = M.HEADER_SIZE + 8 * 2

  local at, addr = base, {}
  for _, name in ipairs(order) do
    at = align(at, name == "FACS" and 64 or 16)
    addr[name] = at
    at = at + size[name]
  end
  local total = at - base
  if at > 0x100000000 then error("acpi.build: the tables " .. hex(base) .. "+" .. hex(total) .. " pass 4 GiB", 2) end

  local pm = c.pm
  local fadt_body = pack(FADT,
    addr.FACS, addr.DSDT, 0, 0, pm.sci, 0, 0, 0, 0, 0,         -- FACS, DSDT, -, profile, SCI, SMI_CMD (none) ...
    pm.evt, 0, pm.cnt, 0, 0, pm.tmr, pm.gpe0, 0,                -- PM1a/b event, PM1a/b control, PM2, timer, GPE0/1
    4, 2, 0, 4, pm.gpe0_len, 0, 0, 0,                           -- their lengths, GPE1 base, CST_CNT
    0x0fff, 0x0fff, 0, 0, 0, 0, 0, 0, c.century, 0x0003, 0,     -- C2/C3 latency (none) ... century, IA-PC boot flags
    (1 << 0) | (1 << 2) | (1 << 4) | (1 << 5) | (1 << 10) | (1 << 15),   -- flags
    1, 8, 0, 1, c.reset.port, c.reset.value, "\0\0\0",          -- RESET_REG, RESET_VALUE
    addr.FACS, addr.DSDT,                                       -- X_FIRMWARE_CTRL, X_DSDT
    1, 32, 0, 0, pm.evt, 0, 0, 0, 0, 0,                         -- X_PM1a_EVT_BLK, X_PM1b_EVT_BLK
    1, 16, 0, 0, pm.cnt, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,          -- X_PM1a_CNT_BLK, X_PM1b_CNT_BLK, X_PM2_CNT_BLK
    1, 32, 0, 0, pm.tmr, 1, pm.gpe0_len * 8, 0, 0, pm.gpe0,     -- X_PM_TMR_BLK, X_GPE0_BLK
    0, 0, 0, 0, 0)                                              -- X_GPE1_BLK
  local bytes = {
    FACS = pack("<c4I4I4I4I4I4I8B", "FACS", 64, 0, 0, 0, 0, 0, 2) .. string.rep("\0", 31),
    DSDT = sdt("DSDT", 2, dsdt_body, c),
    FACP = sdt("FACP", 3, fadt_body, c),
    APIC = sdt("APIC", 1, madt_body, c),
    RSDT = sdt("RSDT", 1, pack("<I4I4", addr.FACP, addr.APIC), c),
    XSDT = sdt("XSDT", 1, pack("<I8I8", addr.FACP, addr.APIC), c),
  }
  bytes.RSDP = rsdp(c.oem_id, addr.RSDT, addr.XSDT)
  for name, b in pairs(bytes) do assert(#b == size[name], name) end

  local parts = {}
  local pos = base
  for _, name in ipairs(order) do
    parts[#parts + 1] = string.rep("\0", addr[name] - pos)
    parts[#parts + 1] = bytes[name]
    pos = addr[name] + size[name]
  end
  local tables = {}
  for _, name in ipairs(order) do if name ~= "RSDP" then tables[name] = addr[name] end end
  return { bytes = table.concat(parts), base = base, size = total, rsdp = addr.RSDP, tables = tables,
           sizes = size }
end

return M
