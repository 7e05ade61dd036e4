-- moonvisor.multiboot: the Multiboot v1 loader behind load.multiboot (the
-- public entry; require "moonvisor.load" and call load.multiboot).
--
--   load.multiboot(g, path[, opts]) -> { entry, mode = "protected", regs = { rax, rbx },
--                                        info_addr, info_size, modules, ... }
--
-- Kernels are ELF (through moonvisor.load_common's ELF parser) or use the a.out
-- kludge (header flag 16).  As every loader of moonvisor.load, it checks the
-- whole file and plans every write before the first g:write, and fails with
-- "load.multiboot: <file>: <problem>" leaving guest memory as it was.
local I = require "moonvisor.load_common"
local read_source, hex = I.read_source, I.hex
local runs, new_plan, plan_add, plan_check, plan_run = I.runs, I.new_plan, I.plan_add, I.plan_check, I.plan_run
local range_name, elf_parse = I.range_name, I.elf_parse

local M = {}

local MB_MAGIC, MB_BOOT_MAGIC = 0x1BADB002, 0x2BADB002
local MB_SEARCH = 8192
local INFO_SIZE = 0x80      -- struct multiboot_info is 120 bytes; padded
local PAGE = 0x1000

local function align(n, a) return (n + a - 1) // a * a end

-- Finds the header: returns its file offset, flags and the raw data.
local function mb_header(data, fail)
  local bad
  local limit = math.min(#data, MB_SEARCH) - 12
  for off = 0, limit, 4 do
    local magic, flags, sum = string.unpack("<I4I4I4", data, off + 1)
    if magic == MB_MAGIC then
      if (magic + flags + sum) & 0xffffffff == 0 then return off, flags end
      bad = bad or off
    end
  end
  if bad then fail("bad multiboot checksum (header at file offset %s)", hex(bad)) end
  fail("no multiboot header in the first 8 KiB")
end

-- The a.out kludge: the header's address fields say where the file goes.
local function mb_aout(data, hoff, fail)
  if hoff + 32 > #data then fail("truncated multiboot header (a.out kludge fields)") end
  local header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr =
    string.unpack("<I4I4I4I4I4", data, hoff + 12 + 1)
  if load_addr > header_addr then
    fail("load_addr %s is above header_addr %s", hex(load_addr), hex(header_addr))
  end
  local file_off = hoff - (header_addr - load_addr)
  if file_off < 0 then
    fail("header_addr %s - load_addr %s is more than the header's file offset %s",
         hex(header_addr), hex(load_addr), hex(hoff))
  end
  local len
  if load_end_addr == 0 then
    len = #data - file_off
  else
    if load_end_addr < load_addr then
      fail("load_end_addr %s is below load_addr %s", hex(load_end_addr), hex(load_addr))
    end
    len = load_end_addr - load_addr
    if file_off + len > #data then
      fail("truncated image: load_addr..load_end_addr needs %s bytes from file offset %s, the file has %s",
           hex(len), hex(file_off), hex(#data))
    end
  end
  local load_end = load_addr + len
  local bss = 0
  if bss_end_addr ~= 0 then
    if bss_end_addr < load_end then
      fail("bss_end_addr %s is below the end of the loaded image %s", hex(bss_end_addr), hex(load_end))
    end
    bss = bss_end_addr - load_end
  end
  if load_end + bss > 0x100000000 then fail("image %s+%s is above 4 GiB", hex(load_addr), hex(len + bss)) end
  local plan = new_plan()
  local what = range_name("segment", load_addr, len + bss)
  plan_add(plan, load_addr, len, data:sub(file_off + 1, file_off + len), what)
  plan_add(plan, load_end, bss, nil, what)   -- the BSS
  local seg = { addr = load_addr, paddr = load_addr, vaddr = load_addr, filesz = len, memsz = len + bss, offset = file_off }
  return plan, {
    entry = entry_addr, format = "aout",
    header = { header_addr = header_addr, load_addr = load_addr, load_end_addr = load_end_addr,
               bss_end_addr = bss_end_addr, entry_addr = entry_addr },
    segments = { seg },
  }
end

-- mem_lower/mem_upper in KiB: RAM from 0 (at most 640 KiB) and from 1 MiB on.
local function mem_sizes(ram)
  local lower, upper = 0, 0
  for _, r in ipairs(ram) do
    if r[1] <= 0 and r[2] > 0 then lower = math.min(r[2], 0xA0000) // 1024 end
    if r[1] <= 0x100000 and r[2] > 0x100000 then
      upper = math.min(r[2] - 0x100000, 0xffffffff * 1024) // 1024
    end
  end
  return lower, upper
end

-- The BIOS-style memory map: RAM (type 1) from the guest's writable
-- mappings, with 640 KiB..1 MiB always reserved (type 2), and readonly
-- mappings (ROM) reserved too.
local function mem_map(maps)
  local ram = runs(maps, true)
  local entries = {}
  local function add(lo, hi, ty) if hi > lo then entries[#entries + 1] = { lo, hi - lo, ty } end end
  for _, r in ipairs(ram) do
    add(r[1], math.min(r[2], 0xA0000), 1)
    add(math.max(r[1], 0x100000), r[2], 1)
  end
  add(0xA0000, 0x100000, 2)
  for _, m in ipairs(maps) do
    if m.readonly then
      add(math.max(m.gpa, 0x100000), m.gpa + m.size, 2)
      add(m.gpa, math.min(m.gpa + m.size, 0xA0000), 2)
    end
  end
  table.sort(entries, function(a, b) return a[1] < b[1] end)
  return entries
end

-- load.multiboot(g, path[, opts]) -> boot description
-- opts: cmdline (string), modules = { { path =, cmdline = } | path, ... },
--   info_addr (default: the first page after the kernel's last byte, BSS
--   included: where the kernel does not go, as QEMU puts its module list and
--   strings), modules_addr (default: the first page after the kernel,
--   skipping the info area), mem_lower / mem_upper (KiB; default: from the
--   memory map), mmap = { { addr =, size =, type = } } (the machine's e820
--   map; default: made from g:mappings()), reserved = { { addr =, size =,
--   what = } } (a machine's own data: nothing may be loaded over it),
--   use_vaddr (ELF kernels, as load.elf).
-- Guest memory written: the kernel, the modules (page-aligned), and at
-- info_addr the info area: struct multiboot_info (0x80 bytes), the memory
-- map, the module list, then the strings (cmdline, "moonvisor", module
-- command lines); its length is returned as info_size.
function M.load(g, src, opts)
  local maps, name, data, fail
  maps, opts, name, data, fail = I.begin("multiboot", g, src, opts)

  local cmdline = opts.cmdline or ""
  if type(cmdline) ~= "string" then fail("cmdline must be a string, got %s", type(cmdline)) end
  if cmdline:find("\0", 1, true) then fail("cmdline contains a NUL byte") end
  local info_addr = opts.info_addr
  if info_addr ~= nil and (math.type(info_addr) ~= "integer" or info_addr < 0 or info_addr % 4 ~= 0) then
    fail("info_addr must be a 4-byte aligned address, got %s", tostring(info_addr))
  end
  local mmap_in = opts.mmap
  if mmap_in ~= nil then
    if type(mmap_in) ~= "table" then fail("mmap must be a list of { addr, size, type }, got %s", type(mmap_in)) end
    for i, e in ipairs(mmap_in) do
      if type(e) ~= "table" or math.type(e.addr) ~= "integer" or math.type(e.size) ~= "integer"
         or math.type(e.type) ~= "integer" then
        fail("mmap entry %d must be { addr =, size =, type = } with integers", i)
      end
    end
  end
  for _, k in ipairs{ "mem_lower", "mem_upper" } do
    local v = opts[k]
    if v ~= nil and (math.type(v) ~= "integer" or v < 0 or v > 0xffffffff) then
      fail("%s must be an integer number of KiB, got %s", k, tostring(v))
    end
  end
  local mods_in = opts.modules or {}
  if type(mods_in) ~= "table" then fail("modules must be a list, got %s", type(mods_in)) end

  -- The kernel.
  local hoff, flags = mb_header(data, fail)
  local required = flags & 0xffff
  if required & 0x4 ~= 0 then fail("flag bit 2 (video mode information) is not supported") end
  if required & ~0x3 ~= 0 then fail("unsupported required flags %s", hex(required & ~0x3)) end
  local plan, image
  if flags & 0x10000 ~= 0 then
    plan, image = mb_aout(data, hoff, fail)
  else
    if data:sub(1, 4) ~= "\127ELF" then
      fail("not an ELF file and no a.out kludge (flag bit 16) in the multiboot header")
    end
    plan, image = elf_parse(data, fail, opts)
    image.format = "elf"
    if image.entry < 0 or image.entry > 0xffffffff then fail("entry point %s is above 4 GiB", hex(image.entry)) end
    for _, s in ipairs(image.segments) do
      if s.addr + s.memsz > 0x100000000 then
        fail("%s is above 4 GiB", range_name("segment", s.addr, s.memsz))
      end
    end
  end
  local kernel_end = 0
  for _, s in ipairs(image.segments) do kernel_end = math.max(kernel_end, s.addr + s.memsz) end
  info_addr = info_addr or align(kernel_end, PAGE)

  -- The modules' files, read before anything is placed.
  local mods = {}
  for i, m in ipairs(mods_in) do
    if type(m) == "string" then m = { path = m } end
    if type(m) ~= "table" then fail("module %d must be a table or a path, got %s", i, type(m)) end
    local msrc = m.data and { name = m.path or m.name or ("module " .. i), data = m.data } or m.path
    if msrc == nil then fail("module %d has no path", i) end
    local ok, mname, mdata = pcall(read_source, "multiboot", msrc)
    if not ok then fail("module %d: %s", i, tostring(mname):gsub("^load%.multiboot: ", "")) end
    local mcmd = m.cmdline or mname
    if type(mcmd) ~= "string" or mcmd:find("\0", 1, true) then
      fail("module %d (%s): cmdline must be a string without NUL bytes", i, mname)
    end
    mods[i] = { path = mname, data = mdata, cmdline = mcmd }
  end

  -- The info area: struct, memory map, module list, strings.
  local mmap
  if mmap_in then
    mmap = {}
    for i, e in ipairs(mmap_in) do mmap[i] = { e.addr, e.size, e.type } end
  else
    mmap = mem_map(maps)
  end
  local mmap_off = INFO_SIZE
  local mods_off = mmap_off + 24 * #mmap
  local str_off = mods_off + 16 * #mods
  local strings, str_len = {}, 0
  local function str(s)
    local at = str_off + str_len
    strings[#strings + 1] = s .. "\0"
    str_len = str_len + #s + 1
    return info_addr + at
  end
  local cmdline_addr = str(cmdline)
  local name_addr = str("moonvisor")
  for _, m in ipairs(mods) do m.string = str(m.cmdline) end
  local info_size = str_off + str_len
  local info_end = info_addr + info_size
  if info_end > 0x100000000 then fail("info area %s is above 4 GiB", range_name("info area", info_addr, info_size)) end

  -- Module placement: page-aligned after the kernel, skipping the info area.
  local cursor = opts.modules_addr or kernel_end
  if math.type(cursor) ~= "integer" or cursor < 0 then fail("modules_addr must be an address, got %s", tostring(cursor)) end
  for i, m in ipairs(mods) do
    local at = align(cursor, PAGE)
    if at < info_end and at + #m.data > info_addr then at = align(info_end, PAGE) end
    m.start, m["end"] = at, at + #m.data
    if m["end"] > 0x100000000 then fail("module %d (%s) at %s is above 4 GiB", i, m.path, hex(at)) end
    plan_add(plan, at, #m.data, m.data, ("module %d (%s) %s+%s"):format(i, m.path, hex(at), hex(#m.data)))
    cursor = m["end"]
  end

  local lower, upper
  if mmap_in then
    local ram = {}
    for _, e in ipairs(mmap) do if e[3] == 1 then ram[#ram + 1] = { e[1], e[1] + e[2] } end end
    table.sort(ram, function(a, b) return a[1] < b[1] end)
    local merged = {}
    for _, r in ipairs(ram) do
      local last = merged[#merged]
      if last and r[1] <= last[2] then last[2] = math.max(last[2], r[2]) else merged[#merged + 1] = r end
    end
    lower, upper = mem_sizes(merged)
  else
    lower, upper = mem_sizes(runs(maps, true))
  end
  lower, upper = opts.mem_lower or lower, opts.mem_upper or upper

  -- struct multiboot_info.  flags: 0 mem_*, 2 cmdline, 3 mods, 6 mmap, 9 boot_loader_name.
  local info_flags = (1 << 0) | (1 << 2) | (1 << 3) | (1 << 6) | (1 << 9)
  local parts = {
    string.pack("<I4I4I4I4I4I4I4", info_flags, lower, upper, 0, cmdline_addr, #mods,
                info_addr + mods_off),
    string.rep("\0", 16),                                    -- syms (a.out / ELF sections): unused
    string.pack("<I4I4I4I4I4I4I4", 24 * #mmap, info_addr + mmap_off, 0, 0, 0, name_addr, 0),
  }
  local head = table.concat(parts)
  parts = { head, string.rep("\0", INFO_SIZE - #head) }     -- vbe_* and framebuffer_*: zero
  for _, e in ipairs(mmap) do parts[#parts + 1] = string.pack("<I4I8I8I4", 20, e[1], e[2], e[3]) end
  for _, m in ipairs(mods) do parts[#parts + 1] = string.pack("<I4I4I4I4", m.start, m["end"], m.string, 0) end
  for _, s in ipairs(strings) do parts[#parts + 1] = s end
  local info = table.concat(parts)
  assert(#info == info_size)
  plan_add(plan, info_addr, info_size, info, range_name("multiboot info", info_addr, info_size))

  plan_check(plan, runs(maps), fail, opts.reserved)
  plan_run(g, plan)

  local modules = {}
  for i, m in ipairs(mods) do
    modules[i] = { path = m.path, cmdline = m.cmdline, start = m.start, ["end"] = m["end"],
                   size = #m.data, string = m.string }
  end
  image.mode = "protected"
  image.regs = { rax = MB_BOOT_MAGIC, rbx = info_addr }
  image.info_addr, image.info_size = info_addr, info_size
  image.modules = modules
  image.flags = flags
  image.header_offset = hoff
  image.kernel_end = kernel_end
  image.mmap = {}
  for i, e in ipairs(mmap) do image.mmap[i] = { addr = e[1], len = e[2], type = e[3] } end
  image.mem_lower, image.mem_upper = lower, upper
  return image
end

return M
