-- moonvisor.pvh: the PVH direct boot ABI (Xen's x86/HVM start of day, which
-- QEMU uses for `-kernel` ELF files that carry the note, e.g. a Linux
-- vmlinux built with CONFIG_PVH).
--
--   local pvh = require "moonvisor.pvh"
--   pvh.entry_of(notes) -> 32-bit entry or nil   (notes: load.elf's image.notes)
--   local b = pvh.load(g, "vmlinux", {
--     cmdline = "console=ttyS0",
--     modules = { { path = "initrd.img", cmdline = "initrd" } },   -- modlist (Linux: [1] is the initrd)
--     e820 = { { addr =, size =, type = } },  -- the memory map (default: from g:mappings())
--     rsdp = 0xe0000,                          -- rsdp_paddr (0: none)
--     reserved = { { addr =, size =, what = } },
--   })
--   --> { entry, mode = "protected", regs = { rbx = start_info }, start_info, info_size,
--         segments, kernel_end, modules = { { path, start, size, cmdline_addr } }, memmap }
--
-- The ELF note: name "Xen", type 18 (XEN_ELFNOTE_PHYS32_ENTRY), a 4- or
-- 8-byte physical entry address.  Segments load at p_paddr.  After the
-- kernel's last byte (page-aligned) comes struct hvm_start_info (56 bytes:
-- magic 0x336ec578, version 1, flags 0, nr_modules, modlist_paddr,
-- cmdline_paddr, rsdp_paddr, memmap_paddr, memmap_entries), the module list
-- (32 bytes each: paddr, size, cmdline_paddr, 0), the memory map (24 bytes
-- each: addr, size, type, 0), then the strings; the modules follow,
-- page-aligned.  Entry: 32-bit protected mode, flat segments, paging and
-- interrupts off, EBX = the start info.  Errors and the all-or-nothing
-- writes are moonvisor.load_common's: "load.pvh: <file>: <problem>".
local I = require "moonvisor.load_common"
local read_source, hex = I.read_source, I.hex
local runs, plan_add, plan_check, plan_run = I.runs, I.plan_add, I.plan_check, I.plan_run
local range_name, elf_parse = I.range_name, I.elf_parse

local M = {}
M.MAGIC = 0x336ec578
M.NOTE_PHYS32_ENTRY = 18
local PAGE = 0x1000

local function align(n, a) return (n + a - 1) // a * a end

-- The entry point from a PHYS32_ENTRY note, or nil.
function M.entry_of(notes)
  for _, n in ipairs(notes or {}) do
    if n.name == "Xen" and n.type == M.NOTE_PHYS32_ENTRY then
      if #n.desc == 4 then return (string.unpack("<I4", n.desc)) end
      if #n.desc == 8 then return (string.unpack("<i8", n.desc)) end
      return nil, ("PVH entry note with a %d-byte address"):format(#n.desc)
    end
  end
  return nil
end

-- The e820 map made from the guest's mappings: RAM below 0x9fc00 and from
-- 1 MiB, the rest of the first MiB reserved.
local function default_map(maps)
  local out = {}
  for _, r in ipairs(runs(maps, true)) do
    if r[1] < 0x9fc00 then out[#out + 1] = { addr = r[1], size = math.min(r[2], 0x9fc00) - r[1], type = 1 } end
    if r[2] > 0x100000 then
      local lo = math.max(r[1], 0x100000)
      out[#out + 1] = { addr = lo, size = r[2] - lo, type = 1 }
    end
  end
  out[#out + 1] = { addr = 0x9fc00, size = 0x100000 - 0x9fc00, type = 2 }
  table.sort(out, function(a, b) return a.addr < b.addr end)
  return out
end

function M.load(g, src, opts)
  local maps, name, data, fail
  maps, opts, name, data, fail = I.begin("pvh", g, src, opts)
  local cmdline = opts.cmdline or ""
  if type(cmdline) ~= "string" or cmdline:find("\0", 1, true) then fail("cmdline must be a string without NUL bytes") end

  local plan, image = elf_parse(data, fail, {})
  local entry, why = M.entry_of(image.notes)
  if not entry then fail("%s", why or "no PVH entry note (Xen, type 18) in the ELF file") end
  if entry < 0 or entry > 0xffffffff then fail("PVH entry %s is above 4 GiB", hex(entry)) end
  local kernel_end = 0
  for _, s in ipairs(image.segments) do kernel_end = math.max(kernel_end, s.addr + s.memsz) end

  local memmap = opts.e820 or default_map(maps)
  local mods = {}
  for i, m in ipairs(opts.modules or {}) do
    if type(m) == "string" then m = { path = m } end
    local msrc = m.data and { name = m.path or ("module " .. i), data = m.data } or m.path
    local ok, mname, mdata = pcall(read_source, "pvh", msrc)
    if not ok then fail("module %d: %s", i, tostring(mname):gsub("^load%.pvh: ", "")) end
    mods[i] = { path = mname, data = mdata, cmdline = m.cmdline or "" }
  end

  local info = opts.info_addr or align(kernel_end, PAGE)
  local modlist = info + 56
  local map_at = modlist + 32 * #mods
  local str_at = map_at + 24 * #memmap
  local strings, pos = {}, str_at
  local function str(s)
    strings[#strings + 1] = s .. "\0"
    local at = pos
    pos = pos + #s + 1
    return at
  end
  local cmdline_at = str(cmdline)
  for _, m in ipairs(mods) do m.cmdline_addr = str(m.cmdline) end
  local info_size = pos - info
  local cursor = align(pos, PAGE)
  for i, m in ipairs(mods) do
    m.start = cursor
    plan_add(plan, cursor, #m.data, m.data, ("module %d (%s) %s+%s"):format(i, m.path, hex(cursor), hex(#m.data)))
    cursor = align(cursor + #m.data, PAGE)
  end
  if pos > 0x100000000 or cursor > 0x100000000 then fail("the start info and modules pass 4 GiB") end

  local parts = { string.pack("<I4I4I4I4I8I8I8I8I4I4", M.MAGIC, 1, 0, #mods, #mods > 0 and modlist or 0,
                              cmdline_at, opts.rsdp or 0, map_at, #memmap, 0) }
  for _, m in ipairs(mods) do parts[#parts + 1] = string.pack("<I8I8I8I8", m.start, #m.data, m.cmdline_addr, 0) end
  for _, e in ipairs(memmap) do parts[#parts + 1] = string.pack("<I8I8I4I4", e.addr, e.size, e.type, 0) end
  for _, s in ipairs(strings) do parts[#parts + 1] = s end
  local blob = table.concat(parts)
  assert(#blob == info_size)
  plan_add(plan, info, info_size, blob, range_name("PVH start info", info, info_size))
  plan_check(plan, runs(maps), fail, opts.reserved)
  plan_run(g, plan)

  local modules = {}
  for i, m in ipairs(mods) do modules[i] = { path = m.path, start = m.start, size = #m.data, cmdline_addr = m.cmdline_addr } end
  image.entry = entry
  image.format = "pvh"
  image.mode = "protected"
  image.regs = { rbx = info }
  image.start_info, image.info_size = info, info_size
  image.cmdline_addr = cmdline_at
  image.kernel_end = kernel_end
  image.modules = modules
  image.memmap = memmap
  return image
end

return M
