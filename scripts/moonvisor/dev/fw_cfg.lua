-- moonvisor.dev.fw_cfg: QEMU's firmware configuration device on the PC's
-- io ports: selector 0x510 (16-bit writes), data 0x511 (byte reads) and the
-- DMA interface at 0x514 (the descriptor's guest-physical address written
-- big-endian, high half at 0x514, low half at 0x518; the low write runs it).
--
--   local fw = require("moonvisor.dev.fw_cfg").new(g, { base = 0x510, dma = true })
--   fw:add(key, bytes)  fw:add_u16(key, v)  fw:add_u32(key, v)  fw:add_u64(key, v)
--   fw:add_string(key, s)            -- s and a NUL byte
--   fw:add_file(name, bytes)         -- a named item in the file directory (key 0x19)
--   fw:item(key) -> bytes or nil     fw:file(name) -> bytes, selector
--   fw:files() -> { { name, select, size } } in directory order
--   fw:select(key)  fw:read_byte()  fw:dma(addr)    what the guest's accesses do
--   fw:read(port, size)  fw:write(port, value, size) port access, as the guest's
--   fw:stats()  fw:remove()
--   fw.KEY.SIGNATURE, .ID, .RAM_SIZE, .NB_CPUS, ... (QEMU's numbers)
--   require("moonvisor.dev.fw_cfg").pc(g, { mem = bytes, cpus = n, e820 = entries, files = { name = bytes } })
--                                    -- the items QEMU's pc machine adds (moonvisor.pc's)
--
-- Model (as QEMU's hw/nvram/fw_cfg.c behaves; the code is this project's):
-- * Items live in two tables, the generic one and the architecture-local
--   one (selector bit 15).  A selector whose index (bits 0-13) is at or past
--   0x20 + file_slots (default 0x20 slots, so 0x40) selects nothing.
--   Selecting resets the read offset.  Reads past an item's end, of an
--   invalid selector or of an empty key give 0.  Writes to the data port do
--   nothing (QEMU removed write support in 2.4).
-- * Ports: a byte read at 0x510 or 0x511 reads data; a 16-bit write at
--   either selects; other sizes read all-ones and are ignored.
-- * DMA (ID bit 1): the descriptor is { be32 control, be32 length, be64
--   address }.  Control bits: 0x01 error, 0x02 read, 0x04 skip, 0x08 select
--   (selector in bits 16-31), 0x10 write.  Read copies item bytes to guest
--   memory (zeros past the end), skip moves the offset, write fails (no item
--   is writable here).  When done the control word is written back: 0, or
--   0x01 when the descriptor, or the memory it names, is not guest RAM (then
--   nothing else happens: no crash, the guest sees the error bit).  Reading
--   the DMA ports gives the signature "QEMU CFG", byte by byte.
-- * The file directory (key 0x19) is built on demand: be32 count, then per
--   file { be32 size, be16 select, be16 reserved, char name[56] }, sorted by
--   name; files get selectors 0x20, 0x21, ... in that order.
local M = {}
local FwCfg = {}
FwCfg.__index = FwCfg
M.FwCfg = FwCfg

M.KEY = {
  SIGNATURE = 0x00, ID = 0x01, UUID = 0x02, RAM_SIZE = 0x03, NOGRAPHIC = 0x04, NB_CPUS = 0x05,
  MACHINE_ID = 0x06, KERNEL_ADDR = 0x07, KERNEL_SIZE = 0x08, KERNEL_CMDLINE = 0x09,
  INITRD_ADDR = 0x0a, INITRD_SIZE = 0x0b, BOOT_DEVICE = 0x0c, NUMA = 0x0d, BOOT_MENU = 0x0e,
  MAX_CPUS = 0x0f, KERNEL_ENTRY = 0x10, KERNEL_DATA = 0x11, INITRD_DATA = 0x12,
  CMDLINE_ADDR = 0x13, CMDLINE_SIZE = 0x14, CMDLINE_DATA = 0x15, SETUP_ADDR = 0x16,
  SETUP_SIZE = 0x17, SETUP_DATA = 0x18, FILE_DIR = 0x19, FILE_FIRST = 0x20,
  WRITE_CHANNEL = 0x4000, ARCH_LOCAL = 0x8000,
  -- x86's architecture-local keys
  ACPI_TABLES = 0x8000, SMBIOS_ENTRIES = 0x8001, IRQ0_OVERRIDE = 0x8002, E820_TABLE = 0x8003,
  HPET = 0x8004,
}
M.DMA_SIGNATURE = "QEMU CFG"
M.CTL = { ERROR = 0x01, READ = 0x02, SKIP = 0x04, SELECT = 0x08, WRITE = 0x10 }
local ENTRY_MASK = 0x3fff
local NAME_MAX = 56
local INVALID = -1

local function hex(n) return ("0x%x"):format(n) end
local function ones(size) return (1 << (8 * size)) - 1 end
local function bswap32(v) return string.unpack(">I4", string.pack("<I4", v & 0xffffffff)) end

function M.new(g, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("fw_cfg.new: options must be a table, got " .. type(opts), 2) end
  local slots = opts.file_slots or 0x20
  if math.type(slots) ~= "integer" or slots < 1 or slots > ENTRY_MASK - 0x20 then
    error("fw_cfg.new: file_slots must be an integer in 1.." .. (ENTRY_MASK - 0x20) .. ", got " .. tostring(slots), 2)
  end
  local self = setmetatable({
    base = opts.base or 0x510, dma_base = opts.dma_base or 0x514, dma_enabled = opts.dma ~= false,
    file_slots = slots, items = { [0] = {}, [1] = {} }, file_list = {}, dir = nil,
    cur = 0, offset = 0, dma_addr = 0, g = g,
    n_selects = 0, n_reads = 0, n_dma = 0, n_dma_errors = 0, n_invalid = 0, traps = {},
  }, FwCfg)
  self:add(M.KEY.SIGNATURE, "QEMU")
  self:add_u32(M.KEY.ID, 1 | (self.dma_enabled and 2 or 0))
  local handler = function(e)
    if e.write then self:write(e.port, e.data, e.size) return end
    return self:read(e.port, e.size)
  end
  self.handler = handler
  if g then
    self.traps[1] = g:trap("io", self.base, 2, handler)
    if self.dma_enabled then self.traps[2] = g:trap("io", self.dma_base, 8, handler) end
  end
  return self
end

-- The device as QEMU's pc machine fills it before any kernel is loaded:
-- RAM size, CPU counts, the E820 map (as key 0x8003 and etc/e820), no NUMA
-- nodes, boot device "c", and opts.files.
function M.pc(g, opts)
  local fw = M.new(g, { dma = true })
  local K, cpus, e820 = M.KEY, opts.cpus, opts.e820
  fw:add(K.UUID, string.rep("\0", 16))
  fw:add_u64(K.RAM_SIZE, opts.mem)
  fw:add_u16(K.NOGRAPHIC, 1)
  fw:add_u16(K.NB_CPUS, cpus)
  fw:add_u16(K.MAX_CPUS, cpus)
  fw:add_u32(K.MACHINE_ID, 0)
  fw:add_u16(K.BOOT_DEVICE, string.byte("c"))
  fw:add_u16(K.BOOT_MENU, 0)
  fw:add(K.NUMA, string.rep("\0", 8 * (1 + cpus)))      -- no NUMA nodes: count 0, a node per CPU 0
  fw:add_u32(K.IRQ0_OVERRIDE, 0)                         -- KVM routes GSI 0 to I/O APIC pin 0
  local entries = {}
  for _, e in ipairs(e820) do entries[#entries + 1] = string.pack("<I8I8I4", e.addr, e.size, e.type) end
  fw:add(K.E820_TABLE, string.pack("<I4", #e820) .. table.concat(entries))
  fw:add_file("etc/e820", table.concat(entries))
  fw:add_file("etc/boot-fail-wait", string.pack("<i4", -1))
  for name, bytes in pairs(opts.files or {}) do fw:add_file(name, bytes) end
  return fw
end

function FwCfg:max_entry() return M.KEY.FILE_FIRST + self.file_slots end

local function check_key(what, key)
  if math.type(key) ~= "integer" or key < 0 or key > 0xffff then
    error(("fw_cfg:%s: key must be a 16-bit integer, got %s"):format(what, tostring(key)), 3)
  end
end

-- fw:add(key, bytes): the item at key (replacing what was there).
function FwCfg:add(key, bytes)
  check_key("add", key)
  if type(bytes) ~= "string" then error("fw_cfg:add: item data must be a string, got " .. type(bytes), 2) end
  if key & ENTRY_MASK >= self:max_entry() then
    error(("fw_cfg:add: key %s is past the last entry %s"):format(hex(key), hex(self:max_entry() - 1)), 2)
  end
  self.items[(key & M.KEY.ARCH_LOCAL) ~= 0 and 1 or 0][key & ENTRY_MASK] = bytes
  return self
end
function FwCfg:add_u16(key, v) return self:add(key, string.pack("<I2", v)) end
function FwCfg:add_u32(key, v) return self:add(key, string.pack("<I4", v)) end
function FwCfg:add_u64(key, v) return self:add(key, string.pack("<i8", v)) end
function FwCfg:add_string(key, s)
  if type(s) ~= "string" then error("fw_cfg:add_string: expected a string, got " .. type(s), 2) end
  return self:add(key, s .. "\0")
end

-- fw:add_file(name, bytes) -> the selector it has now (sorting may move it).
function FwCfg:add_file(name, bytes)
  if type(name) ~= "string" or name == "" or #name >= NAME_MAX or name:find("\0", 1, true) then
    error(("fw_cfg:add_file: name must be 1-%d bytes without NUL, got %s"):format(NAME_MAX - 1, tostring(name)), 2)
  end
  if type(bytes) ~= "string" then error("fw_cfg:add_file: " .. name .. ": data must be a string, got " .. type(bytes), 2) end
  local list = self.file_list
  local found
  for _, f in ipairs(list) do if f.name == name then found = f end end
  if not found then
    if #list >= self.file_slots then
      error(("fw_cfg:add_file: %s: all %d file slots are used"):format(name, self.file_slots), 2)
    end
    found = { name = name }
    list[#list + 1] = found
    table.sort(list, function(a, b) return a.name < b.name end)
  end
  found.data = bytes
  self.dir = nil
  for i, f in ipairs(list) do
    f.select = M.KEY.FILE_FIRST + i - 1
    self.items[0][f.select] = f.data
  end
  return found.select
end

function FwCfg:_directory()
  if not self.dir then
    local parts = { string.pack(">I4", #self.file_list) }
    for _, f in ipairs(self.file_list) do
      parts[#parts + 1] = string.pack(">I4I2I2", #f.data, f.select, 0) .. f.name .. string.rep("\0", NAME_MAX - #f.name)
    end
    self.dir = table.concat(parts)
  end
  return self.dir
end

-- The bytes of the item at key (nil: none).
function FwCfg:item(key)
  check_key("item", key)
  if key & ENTRY_MASK == M.KEY.FILE_DIR and key & M.KEY.ARCH_LOCAL == 0 then return self:_directory() end
  return self.items[(key & M.KEY.ARCH_LOCAL) ~= 0 and 1 or 0][key & ENTRY_MASK]
end

function FwCfg:file(name)
  for _, f in ipairs(self.file_list) do if f.name == name then return f.data, f.select end end
  return nil
end

function FwCfg:files()
  local out = {}
  for i, f in ipairs(self.file_list) do out[i] = { name = f.name, select = f.select, size = #f.data } end
  return out
end

-- {====================================================== what the guest does

-- Selects key (the guest's 16-bit write); returns true when it is valid.
function FwCfg:select(key)
  key = key & 0xffff
  self.n_selects = self.n_selects + 1
  self.offset = 0
  if key & ENTRY_MASK >= self:max_entry() then
    self.cur = INVALID
    self.n_invalid = self.n_invalid + 1
    return false
  end
  self.cur = key
  return true
end

function FwCfg:_current()
  if self.cur == INVALID then return nil end
  return self:item(self.cur)
end

-- The next data byte of the selected item (0 past its end).
function FwCfg:read_byte()
  self.n_reads = self.n_reads + 1
  local data = self:_current()
  if not data or self.offset >= #data then return 0 end
  self.offset = self.offset + 1
  return data:byte(self.offset)
end

-- Zeros len bytes of guest memory at addr, 64 KiB at a time (a guest may ask
-- for 4 GiB); false at the first range that is not guest RAM.
local ZEROS = nil   -- 64 KiB, made at the first zero fill (a 1-byte string.rep copies byte by byte)
local function zero_fill(g, addr, len)
  ZEROS = ZEROS or string.rep(string.rep("\0", 0x100), 0x100)
  while len > 0 do
    local n = math.min(len, #ZEROS)
    if not pcall(g.write, g, addr, n == #ZEROS and ZEROS or ZEROS:sub(1, n)) then return false end
    addr, len = addr + n, len - n
  end
  return true
end

-- Runs the DMA descriptor at guest-physical addr.
function FwCfg:dma(addr)
  local g = self.g
  self.n_dma = self.n_dma + 1
  local ok, desc = pcall(g.read, g, addr, 16)
  if not ok then
    self.n_dma_errors = self.n_dma_errors + 1
    pcall(g.write, g, addr, string.pack(">I4", M.CTL.ERROR))   -- as QEMU: tried, and fails too
    return M.CTL.ERROR
  end
  local control, length, address = string.unpack(">I4I4i8", desc)
  if control & M.CTL.SELECT ~= 0 then self:select(control >> 16) end
  local read, write = false, false
  if control & M.CTL.READ ~= 0 then read = true
  elseif control & M.CTL.WRITE ~= 0 then write = true
  elseif control & M.CTL.SKIP == 0 then length = 0 end
  local result = 0
  local data = self:_current()
  while length > 0 and result == 0 do
    local len
    if not data or self.offset >= #data then
      len = length
      if read and not zero_fill(g, address, len) then result = M.CTL.ERROR end
      if write then result = M.CTL.ERROR end
    else
      len = math.min(length, #data - self.offset)
      if read and not pcall(g.write, g, address, data:sub(self.offset + 1, self.offset + len)) then
        result = M.CTL.ERROR
      end
      if write then result = M.CTL.ERROR end   -- no item is writable
      self.offset = self.offset + len
    end
    address, length = address + len, length - len
  end
  if result ~= 0 then self.n_dma_errors = self.n_dma_errors + 1 end
  pcall(g.write, g, addr, string.pack(">I4", result))
  return result
end

-- Port access as the guest makes it.
function FwCfg:read(port, size)
  size = size or 1
  if port >= self.base and port < self.base + 2 then
    if size == 1 then return self:read_byte() end
    return ones(size)
  end
  local off = port - self.dma_base
  if self.dma_enabled and off >= 0 and off < 8 then
    local n = math.min(size, 8 - off)
    local v = string.unpack("<I" .. n, M.DMA_SIGNATURE:sub(off + 1, off + n))
    if n < size then v = v | (ones(size) & ~ones(n)) end
    return v
  end
  return ones(size)
end

function FwCfg:write(port, value, size)
  size = size or 1
  if port >= self.base and port < self.base + 2 then
    if size == 2 then self:select(value & 0xffff) end
    return                                    -- byte writes: ignored, as QEMU
  end
  local off = port - self.dma_base
  if self.dma_enabled and size == 4 then
    if off == 0 then
      self.dma_addr = bswap32(value) << 32
    elseif off == 4 then
      local addr = self.dma_addr | bswap32(value)
      self.dma_addr = 0
      self:dma(addr)
    end
  end
end

function FwCfg:stats()
  return { selects = self.n_selects, reads = self.n_reads, dma = self.n_dma, dma_errors = self.n_dma_errors,
           invalid_selects = self.n_invalid, selected = self.cur, offset = self.offset, files = #self.file_list }
end

function FwCfg:remove()
  for _, t in ipairs(self.traps) do t:remove() end
  self.traps = {}
end

return M
