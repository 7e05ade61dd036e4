-- moonvisor.acpi_read: reads ACPI tables back, from guest memory or any
-- reader, as an OS finds them: the RSDP search, the RSDT/XSDT, each table's
-- header and checksum, the MADT's entries, the FADT's fields, the FACS.
-- (moonvisor.acpi builds them.)
--
--   local acpi_read = require "moonvisor.acpi_read"
--   local rsdp = acpi_read.find_rsdp(read)    -- read(addr, len) -> bytes: the OS's search
--   local p = acpi_read.parse(read, rsdp)     -- every table, checksums checked
--   p.tables.APIC.madt.entries, p.tables.FACP.fadt.pm_tmr_blk, ...
local M = {}

local HEADER_SIZE <const> = 36
local sum8 = require("moonvisor.core").sum8
local function hex(n) return ("0x%x"):format(n) end

-- acpi_read.find_rsdp(read) -> address or nil: the search an OS makes: the first
-- KiB of the EBDA (segment at BDA 0x40E), then 0xE0000-0xFFFFF, 16-byte
-- steps, signature and the ACPI 1.0 checksum.
function M.find_rsdp(read)
  local function scan(lo, len)
    local ok, data = pcall(read, lo, len)
    if not ok or not data then return nil end
    for off = 0, #data - 20, 16 do
      if data:sub(off + 1, off + 8) == "RSD PTR " and sum8(data, off + 1, off + 20) == 0 then
        return lo + off
      end
    end
  end
  local ok, bda = pcall(read, 0x40e, 2)
  local ebda = ok and bda and #bda == 2 and (string.unpack("<I2", bda) << 4) or 0
  return (ebda ~= 0 and scan(ebda, 1024)) or scan(0xE0000, 0x20000)
end

local function parse_header(b)
  local sig, len, rev, sum, oem, oemt, oemrev, creator, crev = string.unpack("<c4I4BBc6c8I4c4I4", b)
  return { signature = sig, length = len, revision = rev, checksum = sum, oem_id = oem, oem_table_id = oemt,
           oem_revision = oemrev, creator_id = creator, creator_revision = crev }
end

-- The MADT's fields and entries.
function M.parse_madt(b)
  local _
  local lapic_addr, flags = string.unpack("<I4I4", b, 37)
  local entries, pos = {}, 45
  while pos + 1 <= #b do
    local ty, len = b:byte(pos, pos + 1)
    if len < 2 or pos + len - 1 > #b then entries.truncated = true break end
    local e = { type = ty, length = len }
    if ty == 0 and len >= 8 then
      e.kind = "lapic"
      e.uid, e.apic_id, e.flags = string.unpack("<BBI4", b, pos + 2)
    elseif ty == 1 and len >= 12 then
      e.kind = "ioapic"
      e.id, _, e.addr, e.gsi_base = string.unpack("<BBI4I4", b, pos + 2)
    elseif ty == 2 and len >= 10 then
      e.kind = "override"
      e.bus, e.source, e.gsi, e.flags = string.unpack("<BBI4I2", b, pos + 2)
    elseif ty == 4 and len >= 6 then
      e.kind = "lapic_nmi"
      e.uid, e.flags, e.lint = string.unpack("<BI2B", b, pos + 2)
    end
    entries[#entries + 1] = e
    pos = pos + len
  end
  return { lapic_addr = lapic_addr, flags = flags, entries = entries }
end

local function parse_gas(b, at)
  local space, bits, off, access, addr = string.unpack("<BBBBI8", b, at)
  return { space = space, bits = bits, offset = off, access = access, address = addr }
end

-- The FADT's fields this platform uses.
function M.parse_fadt(b)
  local f, _ = {}, nil
  f.firmware_ctrl, f.dsdt, _, f.profile, f.sci_int, f.smi_cmd = string.unpack("<I4I4BBI2I4", b, 37)
  f.pm1a_evt_blk, f.pm1b_evt_blk, f.pm1a_cnt_blk, f.pm1b_cnt_blk, f.pm2_cnt_blk, f.pm_tmr_blk,
    f.gpe0_blk, f.gpe1_blk = string.unpack("<I4I4I4I4I4I4I4I4", b, 57)
  f.pm1_evt_len, f.pm1_cnt_len, f.pm2_cnt_len, f.pm_tmr_len, f.gpe0_blk_len = string.unpack("<BBBBB", b, 89)
  f.p_lvl2_lat, f.p_lvl3_lat = string.unpack("<I2I2", b, 97)
  f.century = b:byte(109)
  f.iapc_boot_arch = string.unpack("<I2", b, 110)
  f.flags = string.unpack("<I4", b, 113)
  if #b >= 129 then
    f.reset_reg = parse_gas(b, 117)
    f.reset_value = b:byte(129)
  end
  if #b >= 148 then f.x_firmware_ctrl, f.x_dsdt = string.unpack("<I8I8", b, 133) end
  if #b >= 232 then
    f.x_pm1a_evt_blk, f.x_pm1a_cnt_blk = parse_gas(b, 149), parse_gas(b, 173)
    f.x_pm_tmr_blk, f.x_gpe0_blk = parse_gas(b, 209), parse_gas(b, 221)
  end
  return f
end

-- acpi_read.parse(read, rsdp) -> { rsdp = {...}, tables = { SIG = { addr, header, bytes, checksum_ok, ... } },
--   list = { SIG, ... } (XSDT order, or RSDT's without an XSDT) }.
-- Raises "acpi_read.parse: ..." when a pointer leads nowhere readable.
function M.parse(read, rsdp_addr)
  local function get(addr, len, what)
    local ok, b = pcall(read, addr, len)
    if not ok or type(b) ~= "string" or #b ~= len then
      error(("acpi_read.parse: cannot read %s at %s+%s"):format(what, hex(addr), hex(len)), 0)
    end
    return b
  end
  local r = get(rsdp_addr, 20, "the RSDP")
  local rsdp = { addr = rsdp_addr }
  rsdp.signature, rsdp.checksum, rsdp.oem_id, rsdp.revision, rsdp.rsdt = string.unpack("<c8Bc6BI4", r)
  rsdp.checksum_ok = sum8(r) == 0
  if rsdp.revision >= 2 then
    local full = get(rsdp_addr, 36, "the RSDP")
    rsdp.length, rsdp.xsdt, rsdp.ext_checksum = string.unpack("<I4I8B", full, 21)
    rsdp.ext_checksum_ok = sum8(full, 1, math.min(rsdp.length, 36)) == 0
  end
  local tables, list = {}, {}
  local function table_at(addr, want)
    local h = parse_header(get(addr, HEADER_SIZE, want or "a table header"))
    if h.length < HEADER_SIZE or h.length > 0x100000 then
      error(("acpi_read.parse: %s at %s has a bad length %d"):format(h.signature, hex(addr), h.length), 0)
    end
    local b = get(addr, h.length, h.signature)
    local t = { addr = addr, header = h, signature = h.signature, bytes = b, checksum_ok = sum8(b) == 0 }
    if h.signature == "APIC" then t.madt = M.parse_madt(b)
    elseif h.signature == "FACP" then t.fadt = M.parse_fadt(b) end
    tables[h.signature] = t
    return t
  end
  local root
  if rsdp.revision >= 2 and rsdp.xsdt ~= 0 then
    root = table_at(rsdp.xsdt, "the XSDT")
    if rsdp.rsdt ~= 0 then table_at(rsdp.rsdt, "the RSDT") end
  else
    root = table_at(rsdp.rsdt, "the RSDT")
  end
  local width = root.signature == "XSDT" and 8 or 4
  local entries = {}
  for pos = HEADER_SIZE + 1, #root.bytes - width + 1, width do
    entries[#entries + 1] = string.unpack(width == 8 and "<I8" or "<I4", root.bytes, pos)
  end
  root.entries = entries
  if tables.RSDT and tables.RSDT ~= root then
    local e = {}
    for pos = HEADER_SIZE + 1, #tables.RSDT.bytes - 3, 4 do e[#e + 1] = string.unpack("<I4", tables.RSDT.bytes, pos) end
    tables.RSDT.entries = e
  end
  for _, a in ipairs(entries) do list[#list + 1] = table_at(a).signature end
  local fadt = tables.FACP and tables.FACP.fadt
  if fadt then
    local dsdt = (fadt.x_dsdt and fadt.x_dsdt ~= 0) and fadt.x_dsdt or fadt.dsdt
    if dsdt ~= 0 then table_at(dsdt, "the DSDT") end
    local facs = (fadt.x_firmware_ctrl and fadt.x_firmware_ctrl ~= 0) and fadt.x_firmware_ctrl or fadt.firmware_ctrl
    if facs ~= 0 then
      local b = get(facs, 64, "the FACS")
      local sig, len, hw, wake, lock, flags, xwake, ver = string.unpack("<c4I4I4I4I4I4I8B", b)
      tables.FACS = { addr = facs, signature = sig, length = len, hardware_signature = hw, waking_vector = wake,
                      global_lock = lock, flags = flags, x_waking_vector = xwake, version = ver, bytes = b }
    end
  end
  return { rsdp = rsdp, tables = tables, list = list }
end

return M
