-- moonvisor.boot: `-kernel` for a moonvisor.pc machine: the boot protocol
-- chosen as QEMU chooses it, the kernel loaded around the machine's own
-- data, fw_cfg's kernel items filled in, the boot VCPU made.
--
--   local b = require("moonvisor.boot").boot(m, {
--     kernel = "k.elf",          -- a path
--     cmdline = "console=ttyS0", -- -append (default "")
--     initrd = "initrd.img",     -- -initrd: Linux and PVH: one file; Multiboot:
--                                -- QEMU's module list "file args,file2 args2" (",," is a comma)
--     protocol = nil,            -- force "linux" | "multiboot" | "pvh"
--   })
--   --> { protocol, entry, mode, cpu, image (the loader's description), cmdline }
--
-- The choice, in QEMU's order (hw/i386/x86.c):
--   1. "HdrS" at 0x202: a Linux kernel (moonvisor.linux, 64-bit entry when
--      the kernel has one; the real-mode setup code is not run)
--   2. a Multiboot v1 header in the first 8 KiB: Multiboot (ELF or a.out
--      kludge; the command line is "<kernel path> <cmdline>" as QEMU makes it)
--   3. an ELF file with a PVH entry note: PVH
--   anything else: "no recognised header" (QEMU would try it as an old zImage).
-- Errors are "<loader>: <file>: <problem>" strings; nothing is written to
-- the guest before the whole load is planned.  The Linux and PVH loaders
-- are required when a kernel needs them (a Multiboot start skips them).
local load = require "moonvisor.load"
local elf_parse = require("moonvisor.load_common").elf_parse
local fwcfg = require "moonvisor.dev.fw_cfg"

local M = {}

local function fail(file, fmt, ...) error(("boot: %s: " .. fmt):format(file, ...), 0) end

-- The protocol QEMU would use for these bytes, or nil and why not.
function M.detect(data)
  if #data >= 0x206 and data:sub(0x203, 0x206) == "HdrS" then return "linux" end
  local limit = math.min(#data, 8192) - 12
  for off = 0, limit, 4 do
    local magic, flags, sum = string.unpack("<I4I4I4", data, off + 1)
    if magic == 0x1BADB002 and (magic + flags + sum) & 0xffffffff == 0 then return "multiboot" end
  end
  if data:sub(1, 4) == "\127ELF" then
    local ok, notes = pcall(M.elf_notes, data)
    if not ok then return nil, ("no Multiboot header in the first 8 KiB, and as ELF: %s"):format(notes) end
    if require("moonvisor.pvh").entry_of(notes) then return "pvh" end
    return nil, "an ELF file with neither a Multiboot header in its first 8 KiB nor a PVH entry note (Xen, type 18)"
  end
  if #data == 0 then return nil, "empty file" end
  return nil, "no recognised header: not a Linux kernel (no \"HdrS\" at 0x202), no Multiboot header in the first 8 KiB, not an ELF file"
end

-- The notes of an ELF image (raises on a malformed file).
function M.elf_notes(data)
  local _, image = elf_parse(data, function(fmt, ...) error(fmt:format(...), 0) end, {})
  return image.notes
end

-- QEMU's -initrd module list for Multiboot: comma-separated, ",," for a comma;
-- each "path args...": the file is the first word, the command line the whole.
function M.module_list(s)
  local mods, cur, i = {}, {}, 1
  while i <= #s do
    local c = s:sub(i, i)
    if c == "," and s:sub(i + 1, i + 1) == "," then cur[#cur + 1] = ","; i = i + 2
    elseif c == "," then mods[#mods + 1] = table.concat(cur); cur = {}; i = i + 1
    else cur[#cur + 1] = c; i = i + 1 end
  end
  mods[#mods + 1] = table.concat(cur)
  local out = {}
  for _, m in ipairs(mods) do
    if m ~= "" then out[#out + 1] = { path = m:match("^(%S+)") or m, cmdline = m } end
  end
  return out
end

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then
    err = tostring(err)
    if err:sub(1, #path + 2) == path .. ": " then err = err:sub(#path + 3) end
    fail(path, "cannot open: %s", err)
  end
  local data = f:read("a")
  f:close()
  if not data then fail(path, "cannot read it") end
  return data
end

local function e820(m)
  local out = {}
  for i, e in ipairs(m.e820) do out[i] = { addr = e.addr, size = e.size, type = e.type } end
  return out
end

-- fw_cfg's kernel items, as a kernel or firmware reading them expects.
local function fill_fw_cfg(m, b)
  local fw = m.dev.fw_cfg
  if not fw then return end
  local K = fwcfg.KEY
  fw:add_u32(K.KERNEL_ADDR, b.kernel_addr & 0xffffffff)
  fw:add_u32(K.KERNEL_SIZE, #b.kernel_data)
  fw:add(K.KERNEL_DATA, b.kernel_data)
  fw:add_u32(K.KERNEL_ENTRY, b.entry & 0xffffffff)
  fw:add_string(K.KERNEL_CMDLINE, b.cmdline)
  fw:add_u32(K.CMDLINE_ADDR, b.cmdline_addr or 0)
  fw:add_u32(K.CMDLINE_SIZE, #b.cmdline + 1)
  fw:add_string(K.CMDLINE_DATA, b.cmdline)
  if b.initrd_data then
    fw:add_u32(K.INITRD_ADDR, b.initrd_addr or 0)
    fw:add_u32(K.INITRD_SIZE, #b.initrd_data)
    fw:add(K.INITRD_DATA, b.initrd_data)
  end
  if b.setup_data then
    fw:add_u32(K.SETUP_ADDR, b.setup_addr or 0)
    fw:add_u32(K.SETUP_SIZE, #b.setup_data)
    fw:add(K.SETUP_DATA, b.setup_data)
  end
end

function M.boot(m, opts)
  if type(opts) ~= "table" then error("pc:boot: options must be a table, got " .. type(opts), 2) end
  local path = opts.kernel
  if type(path) ~= "string" then error("pc:boot: kernel must be a path, got " .. type(path), 2) end
  local cmdline = opts.cmdline or ""
  if type(cmdline) ~= "string" then error("pc:boot: cmdline must be a string, got " .. type(cmdline), 2) end
  if cmdline:find("\0", 1, true) then fail(path, "the command line contains a NUL byte") end
  local data = read_file(path)
  local protocol, why = opts.protocol, nil
  if not protocol then protocol, why = M.detect(data) end
  if not protocol then fail(path, "%s", why) end
  local g = m.g
  local b = { protocol = protocol, kernel_data = data }

  if protocol == "linux" then
    local initrd
    if opts.initrd then initrd = { name = opts.initrd, data = read_file(opts.initrd) } end
    local lb = require("moonvisor.linux").boot(g, { kernel = { name = path, data = data }, cmdline = cmdline, initrd = initrd,
                               e820 = e820(m), rsdp = m.acpi and m.acpi.rsdp, reserved = m.reserved,
                               vcpu = false })
    local cpu = lb.vcpu()
    m:_set_boot_cpu(cpu)
    b.image, b.entry, b.mode, b.cpu = lb, lb.entry, lb.mode, cpu
    b.cmdline, b.cmdline_addr = cmdline, lb.cmdline_addr
    b.kernel_addr = lb.kernel_addr
    b.kernel_data = data:sub(lb.header.kernel_offset + 1)
    b.setup_data, b.setup_addr = data:sub(1, lb.header.kernel_offset), lb.zero_page
    if initrd then b.initrd_data, b.initrd_addr = initrd.data, lb.initrd_addr end
  elseif protocol == "multiboot" then
    local mb_cmdline = path .. " " .. cmdline
    local modules = opts.initrd and M.module_list(opts.initrd) or {}
    local mb = load.multiboot(g, { name = path, data = data }, {
      cmdline = mb_cmdline, modules = modules, mmap = e820(m), reserved = m.reserved })
    b.image, b.entry, b.mode = mb, mb.entry, mb.mode
    b.cpu = m:start(mb.entry, mb.mode, mb.regs)
    b.cmdline = mb_cmdline
    local info = g:read(mb.info_addr, 0x80)
    b.cmdline_addr = string.unpack("<I4", info, 17)
    local low
    for _, s in ipairs(mb.segments) do low = math.min(low or s.addr, s.addr) end
    b.kernel_addr = low
    if mb.modules[1] then
      local mod = mb.modules[1]
      b.initrd_addr, b.initrd_data = mod.start, g:read(mod.start, mod.size)
    end
  elseif protocol == "pvh" then
    local modules
    if opts.initrd then modules = { { path = opts.initrd, data = read_file(opts.initrd), cmdline = "" } } end
    local p = require("moonvisor.pvh").load(g, { name = path, data = data }, {
      cmdline = cmdline, modules = modules, e820 = e820(m), rsdp = m.acpi and m.acpi.rsdp, reserved = m.reserved })
    b.image, b.entry, b.mode = p, p.entry, p.mode
    b.cpu = m:start(p.entry, p.mode, p.regs)
    b.cmdline, b.cmdline_addr = cmdline, p.cmdline_addr
    local low
    for _, s in ipairs(p.segments) do low = math.min(low or s.addr, s.addr) end
    b.kernel_addr = low
    if modules then b.initrd_addr, b.initrd_data = p.modules[1].start, modules[1].data end
  else
    error(("pc:boot: protocol must be \"linux\", \"multiboot\" or \"pvh\", got %s"):format(tostring(protocol)), 2)
  end
  fill_fw_cfg(m, b)
  m.booted = b
  return b
end

return M
