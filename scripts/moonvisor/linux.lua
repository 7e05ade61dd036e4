-- moonvisor.linux: booting a Linux bzImage through the 32- or 64-bit boot
-- protocol (Documentation/arch/x86/boot.rst and zero-page.rst in the Linux
-- tree), as a boot loader that does not run the kernel's real-mode setup code.
--
--   local linux = require "moonvisor.linux"
--   local boot, cpu = linux.boot(g, {
--     kernel  = "bzImage",        -- a path, the image's bytes, or { name =, data = }
--     cmdline = "console=ttyS0",  -- default ""
--     initrd  = "initrd.img",     -- optional: a path, bytes or { name =, data = }
--     mem     = 256 << 20,        -- optional: map that much RAM at 0 when the
--                                 -- guest has none; with RAM mapped, the memory
--                                 -- map reports no RAM at or above mem
--     entry   = "64" | "32",      -- default "64" when the kernel has XLF_KERNEL_64
--     vcpu    = true,             -- false: no VCPU; boot.vcpu() makes one later
--     e820    = { { addr =, size =, type = } },  -- optional: the machine's map
--                                 -- (default: made from the mappings, below)
--     rsdp    = 0xe0000,          -- optional: boot_params.acpi_rsdp_addr
--     reserved = { { addr =, size =, what = } }, -- optional: a machine's own
--                                 -- data, which nothing may be loaded over
--   })
--   cpu:run()
--   --> boot = { zero_page, kernel_addr, kernel_size, init_size, cmdline_addr,
--   --           initrd_addr, initrd_size, entry, mode = "long" | "protected",
--   --           regs, tables, e820 = { { addr, size, type } }, header = {...},
--   --           vcpu = function() -> a new VCPU at the entry point }
--
-- A string kernel/initrd is image bytes when it holds a NUL byte or is longer
-- than 4096 bytes, a path otherwise.
--
-- What linux.boot does, in protocol terms:
-- * Parses the setup header at 0x1F1: "HdrS" at 0x202, version >= 2.06,
--   setup_sects (0 means 4), loadflags (LOADED_HIGH: a bzImage), syssize,
--   kernel_alignment, relocatable_kernel, cmdline_size, and for 2.10+
--   pref_address and init_size, for 2.12+ xloadflags (XLF_KERNEL_64 for the
--   64-bit entry).  The protected-mode kernel is the file after the
--   (setup_sects + 1) * 512 bytes of boot sector and setup.
-- * Loads it at pref_address when [pref_address, + init_size) is RAM;
--   otherwise, for a relocatable kernel, at the lowest kernel_alignment-
--   aligned address from 1 MiB where init_size fits; a non-relocatable kernel
--   that does not fit at its address is refused.
-- * Builds the zero page (struct boot_params, 4 KiB) at linux.ZERO_PAGE: the
--   setup header copied to 0x1F1 (0x1F1 up to 0x202 + the byte at 0x201),
--   type_of_loader 0xFF, loadflags |= CAN_USE_HEAP with heap_end_ptr, the
--   command line at linux.CMDLINE (cmd_line_ptr, ext_cmd_line_ptr), the initrd
--   page-aligned as high as RAM below initrd_addr_max and 4 GiB allows
--   (ramdisk_image/size, ext_ramdisk_image/size), code32_start = the load
--   address, and the e820 map (e820_entries at 0x1E8, table at 0x2D0):
--   RAM (type 1) from the guest's writable mappings, 0x9F000-0x100000 (EBDA,
--   VGA hole, BIOS area) and readonly mappings reserved (type 2).
-- * Entry.  "64": long mode, identity page tables over 4 GiB (2 MiB pages;
--   they cover the kernel's init_size, the zero page and the command line),
--   RIP = load address + 0x200.  "32": 32-bit protected mode, paging off,
--   EIP = load address, EBP = EDI = EBX = 0.  Both: a GDT with flat 4 GiB
--   descriptors at the kernel's selectors __BOOT_CS = 0x10 (code) and
--   __BOOT_DS = 0x18 (data), CS = 0x10, DS = ES = SS = FS = GS = 0x18,
--   interrupts off, RSI/ESI = the zero page.  This GDT is not x86.lua's
--   (there 0x10 is data and 0x18 64-bit code): it is written here, at
--   linux.TABLES (GDT at +0, page tables at +0x1000 as mode_long.page_tables lays
--   them out).  RSP = linux.STACK (the kernel sets up its own).
--
-- Errors: "linux.boot: <file>: <problem>", e.g.
--   linux.boot: bzImage: protocol 2.04 is older than 2.06
-- Everything is checked, and every write planned, before the first write to
-- guest memory: a malformed image or one that does not fit leaves the guest
-- untouched (and maps nothing).
local x86 = require "moonvisor.x86"
local load = require "moonvisor.load"

local linux = {}

-- Where the loader's own data goes (all below 640 KiB, in RAM the e820 map
-- reports as usable: the kernel copies what it keeps).
linux.ZERO_PAGE = 0x7000       -- struct boot_params, 4 KiB
linux.STACK     = 0x9000       -- initial RSP (0x8000-0x8fff)
linux.TABLES    = 0x10000      -- GDT, then PML4, PDPT, 4 page directories (0x7000 bytes)
linux.CMDLINE   = 0x20000      -- the command line, up to LOW_END
linux.LOW_END   = 0x9F000      -- end of low RAM in the e820 map (EBDA and up reserved)
linux.BOOT_CS, linux.BOOT_DS = 0x10, 0x18
linux.MIN_VERSION = 0x0206

local LOADED_HIGH, CAN_USE_HEAP = 0x01, 0x80
local XLF_KERNEL_64 = 0x01
local HEAP_END_PTR = 0xde00    -- boot.rst's example: heap_end (0xe000) - 0x200
local E820_MAX = 128
local GiB4 = 0x100000000
local MiB = 0x100000

local function hex(n) return ("0x%x"):format(n) end
local function ver(v) return ("%d.%02d"):format(v >> 8, v & 0xff) end
local function align_up(n, a) return (n + a - 1) // a * a end

local function argfail(fmt, ...) error(("linux.boot: " .. fmt):format(...), 0) end

-- Reads a path, bytes or { name, data }: returns a display name and the bytes.
local function source(what, src, default_name)
  if type(src) == "table" then
    if type(src.data) ~= "string" then argfail("%s: data must be a string, got %s", what, type(src.data)) end
    return tostring(src.name or default_name), src.data
  end
  if type(src) ~= "string" then argfail("%s must be a path or the image's bytes, got %s", what, type(src)) end
  if #src > 4096 or src:find("\0", 1, true) then return default_name, src end
  local f, err = io.open(src, "rb")
  if not f then
    err = tostring(err)
    if err:sub(1, #src + 2) == src .. ": " then err = err:sub(#src + 3) end
    argfail("%s: cannot open: %s", src, err)
  end
  local data, rerr = f:read("a")
  f:close()
  if not data then argfail("%s: cannot read: %s", src, tostring(rerr)) end
  return src, data
end

-- {======================================================= the setup header

-- The setup header's fields: name, offset in the file (and in boot_params),
-- string.unpack format, the protocol version that introduced it.
linux.HEADER_FIELDS = {
  { "setup_sects", 0x1f1, "B", 0 },       { "root_flags", 0x1f2, "I2", 0 },
  { "syssize", 0x1f4, "I4", 0 },          { "ram_size", 0x1f8, "I2", 0 },
  { "vid_mode", 0x1fa, "I2", 0 },         { "root_dev", 0x1fc, "I2", 0 },
  { "boot_flag", 0x1fe, "I2", 0 },        { "jump", 0x200, "I2", 0x0200 },
  { "header", 0x202, "c4", 0x0200 },      { "version", 0x206, "I2", 0x0200 },
  { "realmode_swtch", 0x208, "I4", 0x0200 }, { "start_sys_seg", 0x20c, "I2", 0x0200 },
  { "kernel_version", 0x20e, "I2", 0x0200 }, { "type_of_loader", 0x210, "B", 0x0200 },
  { "loadflags", 0x211, "B", 0x0200 },    { "setup_move_size", 0x212, "I2", 0x0200 },
  { "code32_start", 0x214, "I4", 0x0200 }, { "ramdisk_image", 0x218, "I4", 0x0200 },
  { "ramdisk_size", 0x21c, "I4", 0x0200 }, { "bootsect_kludge", 0x220, "I4", 0x0200 },
  { "heap_end_ptr", 0x224, "I2", 0x0201 }, { "ext_loader_ver", 0x226, "B", 0x0202 },
  { "ext_loader_type", 0x227, "B", 0x0202 }, { "cmd_line_ptr", 0x228, "I4", 0x0202 },
  { "initrd_addr_max", 0x22c, "I4", 0x0203 }, { "kernel_alignment", 0x230, "I4", 0x0205 },
  { "relocatable_kernel", 0x234, "B", 0x0205 }, { "min_alignment", 0x235, "B", 0x020a },
  { "xloadflags", 0x236, "I2", 0x020c },  { "cmdline_size", 0x238, "I4", 0x0206 },
  { "hardware_subarch", 0x23c, "I4", 0x0207 }, { "hardware_subarch_data", 0x240, "I8", 0x0207 },
  { "payload_offset", 0x248, "I4", 0x0208 }, { "payload_length", 0x24c, "I4", 0x0208 },
  { "setup_data", 0x250, "I8", 0x0209 },  { "pref_address", 0x258, "I8", 0x020a },
  { "init_size", 0x260, "I4", 0x020a },   { "handover_offset", 0x264, "I4", 0x020b },
  { "kernel_info_offset", 0x268, "I4", 0x020f },
}

-- linux.parse(data[, name]) -> header
-- The setup header of a bzImage as a table of its fields (those the image's
-- protocol version has; the others are nil), plus: header_end (file offset
-- just past the header), setup_size ((setup_sects + 1) * 512), kernel_offset
-- and kernel_size (the protected-mode part), has_64 (XLF_KERNEL_64),
-- version_string ("2.15").  Raises "linux.boot: <name>: <problem>".
function linux.parse(data, name)
  name = name or "bzImage"
  local function fail(fmt, ...) error(("linux.boot: %s: " .. fmt):format(name, ...), 0) end
  if type(data) ~= "string" then argfail("%s: expected the image's bytes, got %s", name, type(data)) end
  if #data < 0x208 then
    fail("truncated: %d bytes, too short for a setup header (the \"HdrS\" magic is at 0x202)", #data)
  end
  if data:sub(0x203, 0x206) ~= "HdrS" then
    fail("bad magic at 0x202 (want \"HdrS\"): not a bzImage, or a kernel older than boot protocol 2.00")
  end
  local version = string.unpack("<I2", data, 0x207)
  if version < linux.MIN_VERSION then
    fail("protocol %s is older than %s", ver(version), ver(linux.MIN_VERSION))
  end
  local header_end = 0x202 + data:byte(0x202)
  local h = { version = version, header_end = header_end, version_string = ver(version) }
  for _, f in ipairs(linux.HEADER_FIELDS) do
    local fname, off, fmt, since = f[1], f[2], f[3], f[4]
    if version >= since then
      local size = string.packsize(fmt)
      if off + size > #data then
        fail("truncated setup header: %d bytes, field %s needs %s", #data, fname, hex(off + size))
      end
      h[fname] = string.unpack("<" .. fmt, data, off + 1)
    end
  end
  -- The header's own end must cover the fields its version has.
  local need = 0x202
  for _, f in ipairs(linux.HEADER_FIELDS) do
    if version >= f[4] then need = math.max(need, f[2] + string.packsize(f[3])) end
  end
  if header_end < need then
    fail("setup header ends at %s (0x202 + the byte at 0x201), before its protocol %s fields end at %s",
         hex(header_end), ver(version), hex(need))
  end
  if h.boot_flag ~= 0xaa55 then fail("bad boot_flag %s at 0x1fe (want 0xaa55)", hex(h.boot_flag)) end
  if h.loadflags & LOADED_HIGH == 0 then
    fail("loadflags %s lacks LOADED_HIGH: a zImage (loaded at 0x10000) is not supported, only a bzImage",
         hex(h.loadflags))
  end
  local sects = h.setup_sects == 0 and 4 or h.setup_sects
  h.setup_size = (sects + 1) * 512
  if #data < h.setup_size then
    fail("truncated: %d bytes, the boot sector and %d setup sectors need %d", #data, sects, h.setup_size)
  end
  h.kernel_offset = h.setup_size
  h.kernel_size = #data - h.setup_size
  if h.kernel_size == 0 then fail("truncated: no protected-mode kernel after the %d setup sectors", sects) end
  if h.syssize * 16 > h.kernel_size + 15 then
    fail("truncated: the protected-mode kernel has %d bytes, syssize says %d", h.kernel_size, h.syssize * 16)
  end
  h.has_64 = (h.xloadflags or 0) & XLF_KERNEL_64 ~= 0
  return h
end

-- {======================================================= guest memory

-- RAM as sorted, merged { lo, hi } runs from the writable mappings, capped at
-- `limit` when given.
local function ram_runs(maps, limit) return load.memory_runs(maps, true, limit) end

local function in_ram(runs, addr, len)
  for _, r in ipairs(runs) do
    if addr >= r[1] and addr + len <= r[2] then return true end
  end
  return false
end

local function overlaps(a, alen, b, blen) return a < b + blen and b < a + alen end

-- The e820 map: usable RAM below LOW_END and from 1 MiB, 0x9F000-0x100000
-- reserved, readonly mappings reserved.  Sorted, at most E820_MAX entries.
local function e820_map(maps, runs)
  local e = {}
  local function add(lo, hi, ty) if hi > lo then e[#e + 1] = { addr = lo, size = hi - lo, type = ty } end end
  for _, r in ipairs(runs) do
    add(r[1], math.min(r[2], linux.LOW_END), 1)
    add(math.max(r[1], MiB), r[2], 1)
  end
  add(linux.LOW_END, MiB, 2)
  for _, m in ipairs(maps) do
    if m.readonly then
      add(math.max(m.gpa, MiB), m.gpa + m.size, 2)
      add(m.gpa, math.min(m.gpa + m.size, linux.LOW_END), 2)
    end
  end
  table.sort(e, function(a, b) return a.addr < b.addr end)
  return e
end

-- {======================================================= the CPU

-- The GDT of the boot protocol: null, null, 0x10 __BOOT_CS, 0x18 __BOOT_DS.
local function descriptor(access, flags)
  return string.pack("<I2I2I1I1I1I1", 0xffff, 0, 0, access, (flags << 4) | 0xf, 0)
end

function linux.gdt(long)
  return string.rep("\0", 16)
      .. descriptor(0x9b, long and 0xa or 0xc)   -- 0x10: code, execute/read (64-bit L or 32-bit D)
      .. descriptor(0x93, 0xc)                   -- 0x18: data, read/write, 4 GiB
end

local segment = x86.segment

-- Puts cpu at the boot protocol's entry state for `boot` (tables already written).
local function enter_state(cpu, boot)
  local long = boot.mode == "long"
  local at = boot.tables
  local data = segment(linux.BOOT_DS, false, false)
  local s = cpu:sregs()
  local sregs = {
    gdt = { base = at, limit = 4 * 8 - 1 }, idt = { base = 0, limit = 0 },
    cs = segment(linux.BOOT_CS, true, long), ds = data, es = data, fs = data, gs = data, ss = data,
    tr = s.tr, ldt = s.ldt,
  }
  if long then
    sregs.cr3 = at + 0x1000
    sregs.cr4 = x86.CR4.PAE
    sregs.efer = x86.EFER.LME | x86.EFER.LMA
    sregs.cr0 = x86.CR0.PE | x86.CR0.ET | x86.CR0.NE | x86.CR0.PG
  else
    sregs.cr0, sregs.cr4, sregs.efer, sregs.cr3 = x86.CR0.PE | x86.CR0.ET | x86.CR0.NE, 0, 0, 0
  end
  cpu:write_sregs(sregs)
  cpu:write_state(boot.regs)
end

-- {======================================================= linux.boot

local function read_opt(opts, k, want)
  local v = opts[k]
  if v ~= nil and type(v) ~= want then argfail("%s must be a %s, got %s", k, want, type(v)) end
  return v
end

function linux.boot(g, opts)
  local mt = getmetatable(g)
  if type(mt) ~= "table" or rawget(mt, "__name") ~= "moonvisor.Guest" then
    argfail("expected a moonvisor.Guest, got %s", type(g))
  end
  if type(opts) ~= "table" then argfail("options must be a table, got %s", type(opts)) end
  if opts.kernel == nil then argfail("no kernel given (kernel = path or bytes)") end
  local cmdline = read_opt(opts, "cmdline", "string") or ""
  local entry = opts.entry
  if entry ~= nil then entry = tostring(entry) end
  if entry ~= nil and entry ~= "64" and entry ~= "32" then
    argfail("entry must be \"64\" or \"32\", got %s", tostring(opts.entry))
  end
  local mem = opts.mem
  if mem ~= nil and (math.type(mem) ~= "integer" or mem < 2 * MiB or mem % 0x1000 ~= 0) then
    argfail("mem must be a whole number of pages, at least 2 MiB, got %s", tostring(mem))
  end

  local name, data = source("kernel", opts.kernel, "bzImage")
  local function fail(fmt, ...) error(("linux.boot: %s: " .. fmt):format(name, ...), 0) end
  local h = linux.parse(data, name)

  local initrd_name, initrd
  if opts.initrd ~= nil then initrd_name, initrd = source("initrd", opts.initrd, "initrd") end

  if entry == nil then entry = h.has_64 and "64" or "32" end
  if entry == "64" and not h.has_64 then
    fail("no 64-bit entry point (protocol %s, xloadflags %s lacks XLF_KERNEL_64): use entry = \"32\"",
         h.version_string, hex(h.xloadflags or 0))
  end
  if cmdline:find("\0", 1, true) then fail("the command line contains a NUL byte") end
  if #cmdline > h.cmdline_size then
    fail("command line of %d bytes is longer than the kernel's cmdline_size %d", #cmdline, h.cmdline_size)
  end
  if linux.CMDLINE + #cmdline + 1 > linux.LOW_END then
    fail("command line of %d bytes does not fit below %s", #cmdline, hex(linux.LOW_END))
  end

  -- The RAM: what is mapped, or what mem asks to map.
  local maps = g:mappings()
  local to_map
  if #maps == 0 then
    if not mem then argfail("the guest has no memory: map RAM first or give mem = bytes") end
    to_map = mem
    maps = { { gpa = 0, size = mem, readonly = false } }
  end
  local runs = ram_runs(maps, (not to_map) and mem or nil)

  -- Where the kernel goes.
  local init_size = math.max(h.init_size or 0, h.kernel_size)
  local align = h.kernel_alignment or 0x200000
  if align == 0 or align & (align - 1) ~= 0 then align = 0x200000 end
  local pref = (h.pref_address and h.pref_address ~= 0) and h.pref_address or MiB
  local function fits(at) return at >= MiB and at + init_size <= GiB4 and in_ram(runs, at, init_size) end
  local kaddr
  if fits(pref) then
    kaddr = pref
  elseif h.relocatable_kernel and h.relocatable_kernel ~= 0 then
    for _, r in ipairs(runs) do
      local at = align_up(math.max(r[1], MiB), align)
      if at + init_size <= r[2] and at + init_size <= GiB4 then kaddr = at break end
    end
  end
  local total = 0
  for _, r in ipairs(runs) do total = total + (r[2] - r[1]) end
  if not kaddr then
    fail("the kernel needs %s bytes (init_size) of RAM at %s%s; the guest has %s bytes of RAM",
         hex(init_size), hex(pref),
         (h.relocatable_kernel or 0) ~= 0 and (" or a " .. hex(align) .. "-aligned address") or
           " (not relocatable)", hex(total))
  end

  -- The loader's own data, in low RAM.
  local low = {
    { linux.ZERO_PAGE, 0x1000, "the zero page" },
    { linux.STACK - 0x1000, 0x1000, "the boot stack" },
    { linux.TABLES, x86.TABLES_SIZE, "the GDT and page tables" },
    { linux.CMDLINE, #cmdline + 1, "the command line" },
  }
  for _, l in ipairs(low) do
    if not in_ram(runs, l[1], l[2]) then
      fail("%s at %s+%s is not in RAM (map RAM from 0, or give mem = bytes)", l[3], hex(l[1]), hex(l[2]))
    end
  end

  -- The initrd: page-aligned, as high as RAM allows below initrd_addr_max
  -- and 4 GiB, clear of the kernel's init_size.
  local raddr
  if initrd then
    if #initrd == 0 then fail("initrd %s is empty", initrd_name) end
    local max_end = math.min((h.initrd_addr_max or 0x37ffffff) + 1, GiB4)
    for i = #runs, 1, -1 do
      local r = runs[i]
      local top = math.min(r[2], max_end)
      local at = (top - #initrd) & ~0xfff
      if at >= math.max(r[1], MiB) and overlaps(at, #initrd, kaddr, init_size) then
        at = (kaddr - #initrd) & ~0xfff
      end
      if at >= math.max(r[1], MiB) and at + #initrd <= top and not overlaps(at, #initrd, kaddr, init_size) then
        raddr = at
        break
      end
    end
    if not raddr then
      fail("initrd %s (%d bytes) does not fit in RAM below %s next to the kernel", initrd_name, #initrd,
           hex(max_end))
    end
  end

  local e820 = e820_map(maps, runs)
  if opts.e820 ~= nil then
    if type(opts.e820) ~= "table" then argfail("e820 must be a list of { addr, size, type }, got %s", type(opts.e820)) end
    e820 = {}
    for i, e in ipairs(opts.e820) do
      if type(e) ~= "table" or math.type(e.addr) ~= "integer" or math.type(e.size) ~= "integer"
         or math.type(e.type) ~= "integer" then
        argfail("e820 entry %d must be { addr =, size =, type = } with integers", i)
      end
      e820[i] = { addr = e.addr, size = e.size, type = e.type }
    end
  end
  local rsdp = opts.rsdp
  if rsdp ~= nil and (math.type(rsdp) ~= "integer" or rsdp < 0) then
    argfail("rsdp must be an address, got %s", tostring(rsdp))
  end
  local placed = {
    { kaddr, init_size, "the kernel (init_size)" }, { linux.ZERO_PAGE, 0x1000, "the zero page" },
    { linux.STACK - 0x1000, 0x1000, "the boot stack" }, { linux.TABLES, x86.TABLES_SIZE, "the GDT and page tables" },
    { linux.CMDLINE, #cmdline + 1, "the command line" },
  }
  if raddr then placed[#placed + 1] = { raddr, #initrd, "the initrd" } end
  for _, p in ipairs(placed) do
    for _, r in ipairs(opts.reserved or {}) do
      if overlaps(p[1], p[2], r.addr, r.size) then
        fail("%s at %s+%s overlaps %s %s+%s", p[3], hex(p[1]), hex(p[2]), r.what, hex(r.addr), hex(r.size))
      end
    end
  end
  if #e820 > E820_MAX then fail("the memory map has %d entries, the zero page holds %d", #e820, E820_MAX) end

  -- The zero page.
  local zp = {}
  local function put(off, fmt, v) zp[#zp + 1] = { off, string.pack("<" .. fmt, v) } end
  local hdr_end = math.min(h.header_end, 0x290)                 -- struct setup_header ends by 0x290
  put(0x1f1, "c" .. (hdr_end - 0x1f1), data:sub(0x1f2, hdr_end))
  put(0x210, "B", 0xff)                                         -- type_of_loader: undefined
  put(0x211, "B", (h.loadflags | CAN_USE_HEAP) & ~0x20 & ~0x40) -- not QUIET, not KEEP_SEGMENTS
  put(0x214, "I4", kaddr)                                       -- code32_start
  put(0x224, "I2", HEAP_END_PTR)
  put(0x228, "I4", linux.CMDLINE & 0xffffffff)                  -- cmd_line_ptr
  put(0x0c8, "I4", linux.CMDLINE >> 32)                         -- ext_cmd_line_ptr
  put(0x218, "I4", (raddr or 0) & 0xffffffff)                   -- ramdisk_image
  put(0x21c, "I4", initrd and #initrd & 0xffffffff or 0)        -- ramdisk_size
  put(0x0c0, "I4", (raddr or 0) >> 32)                          -- ext_ramdisk_image
  put(0x0c4, "I4", initrd and #initrd >> 32 or 0)               -- ext_ramdisk_size
  if rsdp then put(0x070, "I8", rsdp) end                       -- acpi_rsdp_addr
  put(0x1e8, "B", #e820)                                        -- e820_entries
  for i, e in ipairs(e820) do                                   -- e820_table
    zp[#zp + 1] = { 0x2d0 + 20 * (i - 1), string.pack("<I8I8I4", e.addr, e.size, e.type) }
  end
  local bytes = string.rep("\0", 4096)
  for _, p in ipairs(zp) do      -- in order: the header copy first, then the fields over it
    bytes = bytes:sub(1, p[1]) .. p[2] .. bytes:sub(p[1] + #p[2] + 1)
  end
  assert(#bytes == 4096)

  -- Everything checked: map, then write.
  if to_map then
    local mv = require "moonvisor"
    g:map(0, mv.vmo(to_map))
  end
  g:write(kaddr, data:sub(h.kernel_offset + 1))
  if initrd then g:write(raddr, initrd) end
  g:write(linux.ZERO_PAGE, bytes)
  g:write(linux.CMDLINE, cmdline .. "\0")
  local long = entry == "64"
  g:write(linux.TABLES, linux.gdt(long))
  if long then g:write(linux.TABLES + 0x1000, (require("moonvisor.mode_long").page_tables(linux.TABLES))) end

  local boot = {
    zero_page = linux.ZERO_PAGE, kernel_addr = kaddr, kernel_size = h.kernel_size, init_size = init_size,
    cmdline_addr = linux.CMDLINE, cmdline = cmdline,
    initrd_addr = raddr, initrd_size = initrd and #initrd or 0,
    entry = long and kaddr + 0x200 or kaddr, entry_bits = long and 64 or 32,
    mode = long and "long" or "protected", tables = linux.TABLES, stack = linux.STACK,
    e820 = e820, header = h, file = name,
  }
  boot.regs = { rip = boot.entry, rsi = linux.ZERO_PAGE, rsp = linux.STACK, rflags = 2,
                rbp = 0, rdi = 0, rbx = 0 }
  function boot.vcpu()
    local cpu = g:vcpu{ entry = 0 }
    enter_state(cpu, boot)
    return cpu
  end
  if opts.vcpu == false then return boot end
  local cpu = boot.vcpu()
  boot.cpu = cpu
  return boot, cpu
end

return linux
