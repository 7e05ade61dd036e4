-- load_spec.lua - the loaders of moonvisor.load: flat binaries, ELF32/ELF64
-- (segments, BSS, symbols), Multiboot v1 (ELF and a.out-kludge kernels, the
-- info structure, memory map, command line, modules), and their errors,
-- which name the loader, the file and the problem and leave the guest
-- untouched.  Uses the kernels the Makefile builds into build/guests/ from
-- examples/guests/ (kernel.c, multiboot.S, multiboot_aout.asm) and small
-- ELF images built here for the malformed cases.
local mv = require "moonvisor"
local H = require "helpers"
local files = require "moonvisor.files"
local load = require "moonvisor.load"

local GUESTS = "build/guests/"

local function slurp(path) return assert(files.read(path)) end

-- A guest with 640 KiB of RAM at 0 and 2 MiB at 1 MiB, both logging dirty
-- pages, so a spec can tell that a failed load wrote nothing.
local function guest()
  local g = H.guest()
  g:map(0, mv.vmo(0xA0000), { log_dirty = true })
  g:map(0x100000, mv.vmo(0x200000), { log_dirty = true })
  return g
end

local function dirty(g)
  local n = 0
  for _, m in ipairs(g:mappings()) do n = n + #g:dirty_pages(m.gpa) end
  return n
end

-- Calls f and returns its error message; fails the spec when f succeeds.
local function err_of(f, ...)
  local ok, e = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  assert.equals("string", type(e))
  return e
end

-- A minimal ELF image: { class = 32|64, entry, type, machine, data_byte,
-- segs = { { paddr, vaddr, data, memsz, offset, filesz } }, phentsize }.
-- Program headers right after the ELF header, segment data after them.
local function mkelf(o)
  local is64 = (o.class or 32) == 64
  local eh, ph = is64 and 64 or 32, is64 and 56 or 32
  eh = is64 and 64 or 52
  local segs = o.segs or {}
  local phoff = eh
  local dataoff = phoff + #segs * ph
  local body, phs = {}, {}
  local at = dataoff
  for _, s in ipairs(segs) do
    local d = s.data or ""
    local off = s.offset or at
    local filesz = s.filesz or #d
    local vaddr = s.vaddr or s.paddr
    local memsz = s.memsz or #d
    if is64 then
      phs[#phs + 1] = string.pack("<I4I4I8I8I8I8I8I8", s.type or 1, 7, off, vaddr, s.paddr, filesz, memsz, 0x1000)
    else
      phs[#phs + 1] = string.pack("<I4I4I4I4I4I4I4I4", s.type or 1, off, vaddr, s.paddr, filesz, memsz, 7, 0x1000)
    end
    body[#body + 1] = d
    at = at + #d
  end
  local ident = "\127ELF" .. string.char(is64 and 2 or 1, o.data_byte or 1, 1) .. string.rep("\0", 9)
  local hdr
  if is64 then
    hdr = ident .. string.pack("<I2I2I4I8I8I8I4I2I2I2I2I2I2", o.type or 2, o.machine or 62, 1,
      o.entry or 0x100000, phoff, 0, 0, eh, o.phentsize or ph, #segs, 64, 0, 0)
  else
    hdr = ident .. string.pack("<I2I2I4I4I4I4I4I2I2I2I2I2I2", o.type or 2, o.machine or 3, 1,
      o.entry or 0x100000, phoff, 0, 0, eh, o.phentsize or ph, #segs, 40, 0, 0)
  end
  assert(#hdr == eh)
  return hdr .. table.concat(phs) .. table.concat(body)
end

-- The LOAD program headers as readelf sees them: { offset, vaddr, paddr, filesz, memsz }.
local function readelf_loads(path)
  local p = assert(io.popen("readelf -lW " .. path))
  local out = {}
  for line in p:lines() do
    local o, v, pa, fs, ms = line:match("^%s*LOAD%s+(0x%x+)%s+(0x%x+)%s+(0x%x+)%s+(0x%x+)%s+(0x%x+)")
    if o then out[#out + 1] = { tonumber(o), tonumber(v), tonumber(pa), tonumber(fs), tonumber(ms) } end
  end
  p:close()
  return out
end

-- The defined symbols as nm sees them: name -> address.
local function nm(path)
  local p = assert(io.popen("nm " .. path))
  local out = {}
  for line in p:lines() do
    local a, name = line:match("^(%x+) %a (%S+)$")
    if a then out[name] = tonumber(a, 16) end
  end
  p:close()
  return out
end

describe("load.flat", function()
  it("copies the file to the address and returns the entry and the size", function()
    local g = guest()
    local img = load.flat(g, GUESTS .. "hello.bin", 0x1000)
    local bytes = slurp(GUESTS .. "hello.bin")
    assert.same({ entry = 0x1000, size = #bytes }, img)
    assert.equals(bytes, g:read(0x1000, #bytes))
    assert.equals(0, g:u8(0x1000 + #bytes))
  end)

  it("takes an image in memory as { name, data }", function()
    local g = guest()
    assert.same({ entry = 0x100ffe, size = 4 }, load.flat(g, { name = "x.bin", data = "\1\2\3\4" }, 0x100ffe))
    assert.equals(0x04030201, g:u32(0x100ffe))
  end)

  it("refuses an image that does not fit, an empty file, a missing file, and writes nothing", function()
    local g = guest()
    dirty(g)
    assert.equals("load.flat: big.bin: image 0x9fffe+0x4 is outside guest memory",
                  err_of(load.flat, g, { name = "big.bin", data = "abcd" }, 0x9fffe))
    assert.equals("load.flat: e.bin: empty file", err_of(load.flat, g, { name = "e.bin", data = "" }, 0))
    assert.matches("^load%.flat: /nonexistent/k%.bin: cannot open: ", err_of(load.flat, g, "/nonexistent/k.bin", 0))
    assert.equals("load.flat: addr must be an integer, got nil", err_of(load.flat, g, GUESTS .. "hello.bin"))
    assert.equals("load.flat: expected a moonvisor.Guest, got table", err_of(load.flat, {}, GUESTS .. "hello.bin", 0))
    assert.equals(0, dirty(g))
  end)
end)

for _, k in ipairs{ { "elf32", 32 }, { "elf64", 64 } } do
  local file, class = GUESTS .. k[1] .. ".elf", k[2]
  describe("load.elf with the ELF" .. class .. " test kernel", function()
    it("copies each PT_LOAD segment to its physical address and returns the entry", function()
      local g = guest()
      local data = slurp(file)
      local img = load.elf(g, file)
      assert.equals(class, img.class)
      local loads = readelf_loads(file)
      assert.equals(2, #loads)
      assert.equals(#loads, #img.segments)
      for i, l in ipairs(loads) do
        local s = img.segments[i]
        assert.same({ l[1], l[2], l[3], l[4], l[5] }, { s.offset, s.vaddr, s.paddr, s.filesz, s.memsz })
        assert.equals(l[3], s.addr)
        assert.equals(data:sub(l[1] + 1, l[1] + l[4]), g:read(l[3], l[4]))
      end
      assert.equals(img.symbols._start, img.entry)
      assert.equals(0x600DF00D, g:u32(img.symbols.data_word))
    end)

    it("zeroes the BSS (p_memsz > p_filesz) and nothing past it", function()
      local g = guest()
      g:write(0x100000, string.rep("\xff", 0x3000))
      local img = load.elf(g, file)
      local data_seg = img.segments[2]
      assert.is_true(data_seg.memsz > data_seg.filesz)
      local bss = g:read(data_seg.addr + data_seg.filesz, data_seg.memsz - data_seg.filesz)
      assert.equals(string.rep("\0", #bss), bss)
      assert.equals(string.rep("\0", 4096), g:read(img.symbols.bss_buf, 4096))
      assert.equals(0xff, g:u8(data_seg.addr + data_seg.memsz))
    end)

    it("reads .symtab/.strtab: names to addresses as nm sees them, and a sorted list", function()
      local g = guest()
      local img = load.elf(g, file)
      local want = nm(file)
      for _, name in ipairs{ "_start", "kmain", "data_word", "bss_buf", "boot_magic", "boot_info" } do
        assert.is_number(img.symbols[name], name)
        assert.equals(want[name], img.symbols[name], name)
      end
      for i = 2, #img.symbol_list do
        assert.is_true(img.symbol_list[i - 1].addr <= img.symbol_list[i].addr)
      end
      assert.same({ "kmain", 5 }, { load.lookup(img, img.symbols.kmain + 5) })
      assert.same({ "bss_buf", 100 }, { load.lookup(img, img.symbols.bss_buf + 100) })
      assert.is_nil(load.lookup(img, 0x1000))
    end)

    it("reads the symbols when first asked for: a bad entry raises then, the load itself done", function()
      local data, is64 = slurp(file), class == 64
      local shoff = string.unpack(is64 and "<I8" or "<I4", data, (is64 and 0x28 or 0x20) + 1)
      local shentsize, shnum = string.unpack("<I2I2", data, (is64 and 0x3a or 0x2e) + 1)
      local patched
      for k = 0, shnum - 1 do
        local at = shoff + k * shentsize
        if string.unpack("<I4", data, at + 5) == 2 then   -- SHT_SYMTAB: symbol 1's st_name
          local p = string.unpack(is64 and "<I8" or "<I4", data, at + (is64 and 0x18 or 0x10) + 1) + (is64 and 24 or 16)
          patched = data:sub(1, p) .. string.pack("<I4", 0x7fffffff) .. data:sub(p + 5)
        end
      end
      assert.is_string(patched)
      local img = load.elf(guest(), { name = "bad-sym.elf", data = patched })
      assert.equals(load.elf(guest(), file).entry, img.entry)
      assert.is_nil(rawget(img, "symbols"))
      local want = "load.elf: bad-sym.elf: symbol 1: name offset 0x7fffffff is outside the string table"
      assert.equals(want, err_of(function() return img.symbols end))
      assert.equals(want, err_of(function() return img.symbol_list end))
      local good = load.elf(guest(), file)
      assert.is_nil(rawget(good, "symbol_list"))
      local list = good.symbol_list
      assert.equals(list, rawget(good, "symbol_list"))   -- read once, then kept
      assert.equals(good.symbols, rawget(good, "symbols"))
    end)
  end)
end

describe("load.elf", function()
  local seg = { paddr = 0x100000, vaddr = 0x200000, data = "\xf4\xeb\xfd", memsz = 0x10 }

  it("loads at p_vaddr with use_vaddr, at p_paddr by default", function()
    local g = guest()
    local img = load.elf(g, { name = "v.elf", data = mkelf{ segs = { seg } } })
    assert.equals(0x100000, img.segments[1].addr)
    assert.equals(0xfdebf4, g:u32(0x100000))
    local img2 = load.elf(g, { name = "v.elf", data = mkelf{ segs = { seg } } }, { use_vaddr = true })
    assert.equals(0x200000, img2.segments[1].addr)
    assert.equals(0xfdebf4, g:u32(0x200000))
    assert.same({}, img2.symbols)
  end)

  it("loads an ELF64 segment above 4 GiB when memory is there", function()
    local g = guest()
    g:map(0x100000000, mv.vmo(0x1000))
    local img = load.elf(g, { name = "hi.elf", data = mkelf{ class = 64, entry = 0x100000000,
      segs = { { paddr = 0x100000000, data = "hi", memsz = 0x1000 } } } })
    assert.equals(64, img.class)
    assert.equals(0x100000000, img.entry)
    assert.equals("hi\0", g:read(0x100000000, 3))
  end)

  local bad = {
    { "bad magic (not an ELF file)", "not an elf file at all" },
    { "bad ELF class 3 (want 1 = ELF32 or 2 = ELF64)", "\127ELF\3\1\1" .. string.rep("\0", 60) },
    { "not little-endian (EI_DATA 2)", mkelf{ data_byte = 2, segs = { seg } } },
    { "truncated ELF header (40 of 52 bytes)", mkelf{ segs = { seg } }:sub(1, 40) },
    { "truncated ELF header (60 of 64 bytes)", mkelf{ class = 64, segs = { seg } }:sub(1, 60) },
    { "unsupported machine 62 for ELF32 (want 3 = i386)", mkelf{ machine = 62, segs = { seg } } },
    { "unsupported machine 3 for ELF64 (want 62 = x86-64)", mkelf{ class = 64, machine = 3, segs = { seg } } },
    { "not an executable (e_type 3, want 2 = ET_EXEC)", mkelf{ type = 3, segs = { seg } } },
    { "no program headers", mkelf{} },
    { "bad program header size 16 (want 32)", mkelf{ phentsize = 16, segs = { seg } } },
    { "truncated program header table", mkelf{ segs = { seg } }:sub(1, 70) },
    { "no loadable (PT_LOAD) segments", mkelf{ segs = { { type = 4, paddr = 0, data = "x" } } } },
    { "program header 0: dynamically linked (PT_INTERP); only static executables load",
      mkelf{ segs = { { type = 3, paddr = 0, data = "/lib/ld.so" } } } },
    { "segment 0x400000+0x2000 is outside guest memory",
      mkelf{ segs = { { paddr = 0x400000, data = "x", memsz = 0x2000 } } } },
    { "segment 0x2ff000+0x2000 is outside guest memory",
      mkelf{ segs = { { paddr = 0x2ff000, data = "x", memsz = 0x2000 } } } },
    { "segment 0xfffffffffffff000+0x2000 is outside guest memory",
      mkelf{ class = 64, segs = { { paddr = -0x1000, data = "x", memsz = 0x2000 } } } },
    { "overlapping segments: segment 0x100000+0x2000 and segment 0x101000+0x10",
      mkelf{ segs = { { paddr = 0x100000, data = "a", memsz = 0x2000 }, { paddr = 0x101000, data = "b", memsz = 0x10 } } } },
    { "segment 0x100000+0x1: p_filesz 0x2 is larger than p_memsz 0x1",
      mkelf{ segs = { { paddr = 0x100000, data = "ab", memsz = 1 } } } },
    { "segment 0x100000+0x100: file data 0x54+0x100 is past the end of the file (87 bytes)",
      mkelf{ segs = { { paddr = 0x100000, data = "abc", filesz = 0x100, memsz = 0x100 } } } },
  }
  for _, case in ipairs(bad) do
    it("refuses a file with: " .. case[1], function()
      local g = guest()
      dirty(g)
      assert.equals("load.elf: k.elf: " .. case[1], err_of(load.elf, g, { name = "k.elf", data = case[2] }))
      assert.equals(0, dirty(g))
    end)
  end

  it("writes nothing when only the last segment is bad", function()
    local g = guest()
    dirty(g)
    local img = mkelf{ segs = { { paddr = 0x100000, data = "good" }, { paddr = 0x1000, data = "good" },
                                { paddr = 0x2ffff0, data = "bad", memsz = 0x20 } } }
    assert.equals("load.elf: k.elf: segment 0x2ffff0+0x20 is outside guest memory",
                  err_of(load.elf, g, { name = "k.elf", data = img }))
    assert.equals(0, dirty(g))
    assert.equals(0, g:u32(0x100000))
  end)

  it("names the file given by path", function()
    local g = guest()
    assert.equals("load.elf: README.md: bad magic (not an ELF file)", err_of(load.elf, g, "README.md"))
    assert.equals("load.elf: options must be a table, got string", err_of(load.elf, g, "README.md", "x"))
  end)
end)

-- The Multiboot info structure and what it points to, read back with g:u32.
local function info(g, a)
  local t = {
    flags = g:u32(a), mem_lower = g:u32(a + 4), mem_upper = g:u32(a + 8),
    cmdline = g:u32(a + 16), mods_count = g:u32(a + 20), mods_addr = g:u32(a + 24),
    mmap_length = g:u32(a + 44), mmap_addr = g:u32(a + 48), boot_loader_name = g:u32(a + 64),
  }
  return t
end

local function cstr(g, a)
  local s = ""
  while true do
    local c = g:u8(a)
    if c == 0 then return s end
    s, a = s .. string.char(c), a + 1
  end
end

local function mmap(g, i)
  local out, a = {}, i.mmap_addr
  while a < i.mmap_addr + i.mmap_length do
    local size = g:u32(a)
    out[#out + 1] = { size = size, base = g:u64(a + 4), len = g:u64(a + 12), type = g:u32(a + 20) }
    a = a + 4 + size
  end
  return out
end

describe("load.multiboot", function()
  it("loads a Multiboot ELF kernel and builds the info structure", function()
    local g = guest()
    local file = GUESTS .. "multiboot.elf"
    local mb = load.multiboot(g, file, { cmdline = "console=ttyS0 quiet" })
    local syms = nm(file)
    assert.equals(syms._start, mb.entry)
    assert.equals("elf", mb.format)
    assert.equals("protected", mb.mode)
    -- the info goes in the first page after the kernel (its BSS ends at 0x102040)
    assert.same({ rax = 0x2BADB002, rbx = 0x103000 }, mb.regs)
    assert.equals(0x103000, mb.info_addr)
    assert.equals(0x600DF00D, g:u32(syms.data_word))
    -- the header the kernel carries: magic, flags 0x3, checksum
    assert.equals(0x1BADB002, g:u32(0x100000))
    assert.equals(0x3, g:u32(0x100004))

    local i = info(g, 0x103000)
    assert.equals((1 << 0) | (1 << 2) | (1 << 3) | (1 << 6) | (1 << 9), i.flags)
    assert.equals(640, i.mem_lower)
    assert.equals(2048, i.mem_upper)
    assert.equals("console=ttyS0 quiet", cstr(g, i.cmdline))
    assert.equals("moonvisor", cstr(g, i.boot_loader_name))
    assert.equals(0, i.mods_count)
    assert.same({
      { size = 20, base = 0, len = 0xA0000, type = 1 },
      { size = 20, base = 0xA0000, len = 0x60000, type = 2 },
      { size = 20, base = 0x100000, len = 0x200000, type = 1 },
    }, mmap(g, i))
    -- everything the info area points to lies inside it
    for _, a in ipairs{ i.cmdline, i.boot_loader_name, i.mmap_addr, i.mods_addr } do
      assert.is_true(a >= 0x103000 and a < 0x103000 + mb.info_size)
    end
  end)

  it("loads modules page-aligned after the kernel, with their command lines", function()
    local g = guest()
    local m1, m2 = slurp(GUESTS .. "hello.bin"), slurp("README.md")
    local mb = load.multiboot(g, GUESTS .. "multiboot.elf", {
      modules = { { path = GUESTS .. "hello.bin", cmdline = "hello arg=1" }, { path = "README.md" } },
    })
    local i = info(g, mb.info_addr)
    assert.equals(2, i.mods_count)
    assert.equals(2, #mb.modules)
    local prev_end = mb.kernel_end
    for k, bytes in ipairs{ m1, m2 } do
      local a = i.mods_addr + 16 * (k - 1)
      local start, stop = g:u32(a), g:u32(a + 4)
      assert.equals(0, start % 0x1000)
      assert.is_true(start >= prev_end)
      assert.equals(#bytes, stop - start)
      assert.equals(bytes, g:read(start, #bytes))
      assert.same({ start, stop }, { mb.modules[k].start, mb.modules[k]["end"] })
      prev_end = stop
    end
    assert.equals(0x104000, g:u32(i.mods_addr))        -- BSS ends at 0x102040, then a page of info
    assert.equals("hello arg=1", cstr(g, g:u32(i.mods_addr + 8)))
    assert.equals("README.md", cstr(g, g:u32(i.mods_addr + 16 + 8)))
  end)

  it("loads an a.out-kludge kernel where its header says, with the BSS zeroed", function()
    local g = guest()
    local file = GUESTS .. "multiboot_aout.bin"
    local bytes = slurp(file)
    local magic, flags, sum, header_addr, load_addr, load_end, bss_end, entry =
      string.unpack("<I4I4I4I4I4I4I4I4", bytes)
    assert.equals(0x1BADB002, magic)
    assert.equals(0x10003, flags)
    assert.equals(0, (magic + flags + sum) & 0xffffffff)
    g:write(0x100000, string.rep("\xff", 0x3000))
    local mb = load.multiboot(g, file, { cmdline = "aout" })
    assert.equals("aout", mb.format)
    assert.equals(entry, mb.entry)
    assert.equals(0x100020, mb.entry)                 -- right after the 32-byte header
    assert.same({ header_addr = header_addr, load_addr = load_addr, load_end_addr = load_end,
                  bss_end_addr = bss_end, entry_addr = entry }, mb.header)
    assert.equals(#bytes, load_end - load_addr)
    assert.equals(bytes, g:read(load_addr, #bytes))
    assert.equals(string.rep("\0", bss_end - load_end), g:read(load_end, bss_end - load_end))
    assert.equals(0xff, g:u8(bss_end))
    assert.equals(bss_end, mb.kernel_end)
    assert.equals(0x102000, mb.info_addr)             -- the page after the BSS
    assert.equals("aout", cstr(g, info(g, 0x102000).cmdline))
  end)

  it("takes info_addr, mem_lower and mem_upper from the options", function()
    local g = guest()
    local mb = load.multiboot(g, GUESTS .. "multiboot_aout.bin",
                              { info_addr = 0x20000, mem_lower = 600, mem_upper = 1000 })
    assert.same({ rax = 0x2BADB002, rbx = 0x20000 }, mb.regs)
    local i = info(g, 0x20000)
    assert.equals(600, i.mem_lower)
    assert.equals(1000, i.mem_upper)
    assert.equals("", cstr(g, i.cmdline))
    assert.equals(0, g:u32(0x9000))
  end)

  it("takes the memory map from mmap, and computes mem_lower and mem_upper from its RAM", function()
    local g = guest()
    local map = { { addr = 0, size = 0x9fc00, type = 1 }, { addr = 0x9fc00, size = 0x400, type = 2 },
                  { addr = 0x100000, size = 0x180000, type = 1 }, { addr = 0x280000, size = 0x80000, type = 3 } }
    local mb = load.multiboot(g, GUESTS .. "multiboot_aout.bin", { mmap = map })
    local i = info(g, mb.info_addr)
    assert.equals(639, i.mem_lower)
    assert.equals(0x600, i.mem_upper)
    assert.same({
      { size = 20, base = 0, len = 0x9fc00, type = 1 }, { size = 20, base = 0x9fc00, len = 0x400, type = 2 },
      { size = 20, base = 0x100000, len = 0x180000, type = 1 }, { size = 20, base = 0x280000, len = 0x80000, type = 3 },
    }, mmap(g, i))
    assert.equals("load.multiboot: k.bin: mmap entry 2 must be { addr =, size =, type = } with integers",
                  err_of(load.multiboot, g, { name = "k.bin", data = slurp(GUESTS .. "multiboot_aout.bin") },
                         { mmap = { map[1], { addr = 1 } } }))
  end)

  it("refuses to load over the reserved areas it is given, writing nothing", function()
    local g = guest()
    dirty(g)
    local k = GUESTS .. "multiboot_aout.bin"
    assert.equals("load.multiboot: " .. k .. ": segment 0x100000+0x1048 overlaps the ACPI tables 0x101000+0x100",
                  err_of(load.multiboot, g, k, { reserved = { { addr = 0x101000, size = 0x100, what = "the ACPI tables" } } }))
    assert.equals(0, dirty(g))
  end)

  it("computes mem_upper from the RAM contiguous from 1 MiB and reserves ROM", function()
    local g = H.guest()
    g:map(0, mv.vmo(0x80000))
    g:map(0x100000, mv.vmo(0x100000))
    g:map(0x200000, mv.vmo(0x100000))                    -- adjacent: one run of 2 MiB
    g:map(0x400000, mv.vmo(0x100000))                    -- after a hole: not in mem_upper
    g:map(0xf0000, mv.vmo(0x10000), { readonly = true }) -- a BIOS ROM
    local mb = load.multiboot(g, GUESTS .. "multiboot_aout.bin")
    local i = info(g, mb.info_addr)
    assert.equals(512, i.mem_lower)
    assert.equals(2048, i.mem_upper)
    assert.same({
      { size = 20, base = 0, len = 0x80000, type = 1 },
      { size = 20, base = 0xA0000, len = 0x60000, type = 2 },
      { size = 20, base = 0x100000, len = 0x200000, type = 1 },
      { size = 20, base = 0x400000, len = 0x100000, type = 1 },
    }, mmap(g, i))
    assert.equals(4, #mb.mmap)
  end)

  local aout = slurp(GUESTS .. "multiboot_aout.bin")
  local function patched(off, v)                       -- aout with the u32 at off replaced
    return aout:sub(1, off) .. string.pack("<I4", v) .. aout:sub(off + 5)
  end
  local function resum(s)                              -- recomputes the checksum
    local m, f = string.unpack("<I4I4", s)
    return s:sub(1, 8) .. string.pack("<I4", (-(m + f)) & 0xffffffff) .. s:sub(13)
  end
  local bad = {
    { "no multiboot header in the first 8 KiB", string.rep("\0", 9000) .. aout },
    { "bad multiboot checksum (header at file offset 0x0)", patched(8, 0) },
    { "flag bit 2 (video mode information) is not supported", resum(patched(4, 0x10007)) },
    { "unsupported required flags 0x8", resum(patched(4, 0x1000b)) },
    { "truncated multiboot header (a.out kludge fields)", aout:sub(1, 20) },
    { "load_addr 0x100010 is above header_addr 0x100000", patched(16, 0x100010) },
    { "load_end_addr 0xff000 is below load_addr 0x100000", patched(20, 0xff000) },
    { "truncated image: load_addr..load_end_addr needs 0x48 bytes from file offset 0x0, the file has 0x40",
      aout:sub(1, 64) },
    { "bss_end_addr 0x100010 is below the end of the loaded image 0x100048", patched(24, 0x100010) },
    { "segment 0x100000+0x300000 is outside guest memory", patched(24, 0x400000) },
    { "not an ELF file and no a.out kludge (flag bit 16) in the multiboot header", resum(patched(4, 0x3)) },
  }
  for _, case in ipairs(bad) do
    it("refuses a kernel with: " .. case[1], function()
      local g = guest()
      dirty(g)
      assert.equals("load.multiboot: k.bin: " .. case[1], err_of(load.multiboot, g, { name = "k.bin", data = case[2] }))
      assert.equals(0, dirty(g))
    end)
  end

  it("refuses bad options, missing modules and modules or an info area that do not fit, writing nothing", function()
    local g = H.guest()
    g:map(0, mv.vmo(0xA0000), { log_dirty = true })
    g:map(0x100000, mv.vmo(0x3000), { log_dirty = true })
    dirty(g)
    local k = GUESTS .. "multiboot_aout.bin"
    assert.equals("load.multiboot: " .. k .. ": module 1: /nonexistent: cannot open: No such file or directory",
                  err_of(load.multiboot, g, k, { modules = { "/nonexistent" } }))
    assert.equals("load.multiboot: " .. k .. ": module 1 (README.md) 0x103000+" ..
                  ("0x%x"):format(#slurp("README.md")) .. " is outside guest memory",
                  err_of(load.multiboot, g, k, { modules = { "README.md" } }))
    assert.matches("^load%.multiboot: .-: multiboot info 0x9ffc0%+0x%x+ is outside guest memory$",
                   err_of(load.multiboot, g, k, { info_addr = 0x9ffc0 }))
    assert.matches("^load%.multiboot: .-: segment 0x100000%+0x1048 and multiboot info 0x100100%+0x%x+ overlap$",
                   err_of(load.multiboot, g, k, { info_addr = 0x100100 }))
    assert.equals("load.multiboot: " .. k .. ": cmdline must be a string, got number",
                  err_of(load.multiboot, g, k, { cmdline = 1 }))
    assert.equals("load.multiboot: " .. k .. ": info_addr must be a 4-byte aligned address, got 4097",
                  err_of(load.multiboot, g, k, { info_addr = 4097 }))
    assert.equals(0, dirty(g))
  end)
end)

-- The loaded kernels run: Multiboot and ELF32 ones in 32-bit protected mode,
-- the ELF64 one in long mode (moonvisor.x86); each writes to COM1 and halts.
describe("the loaded test kernels", function()
  local function run(g, entry, mode, regs)
    local out = {}
    g:trap("io", 0x3f8, 1, function(e) out[#out + 1] = string.char(e.data) end)
    local cpu = g:vcpu{ entry = entry, mode = mode }
    if regs then cpu:write_state(regs) end
    local e = cpu:run()
    return e.type, table.concat(out)
  end

  for _, k in ipairs{ { "multiboot.elf", "ok\n" }, { "multiboot_aout.bin", "mb\n" } } do
    it("run from load.multiboot with EAX = 0x2BADB002 and EBX = the info: " .. k[1], function()
      local g = guest()
      local mb = load.multiboot(g, GUESTS .. k[1])
      assert.same({ "hlt", k[2] }, { run(g, mb.entry, mb.mode, mb.regs) })
      local magic = mb.symbols and mb.symbols.boot_magic or mb.header.load_end_addr  -- a.out: first bss word
      local info_at = mb.symbols and mb.symbols.boot_info or magic + 4
      assert.equals(0x2BADB002, g:u32(magic))
      assert.equals(mb.info_addr, g:u32(info_at))
    end)
  end

  for _, k in ipairs{ { "elf32.elf", "protected" }, { "elf64.elf", "long" } } do
    it("run from load.elf in " .. k[2] .. " mode: " .. k[1], function()
      local g = guest()
      local img = load.elf(g, GUESTS .. k[1])
      assert.same({ "hlt", "ok\n" }, { run(g, img.entry, k[2]) })
    end)
  end
end)
