-- moonvisor.load_common: what the loaders share (moonvisor.load's flat and
-- elf, moonvisor.multiboot, moonvisor.pvh, moonvisor.boot's probe): argument
-- and file checks, the guest's memory as runs, write plans checked as a
-- whole before the first write, ELF parsing.  Not a public API: scripts use
-- moonvisor.load.
local C = {}

local typename = require("moonvisor.core").typename

local MAXI = math.maxinteger

-- {======================================================= errors, files

-- A fail(fmt, ...) function that raises "load.<what>: <file>: <message>".
local function failer(what, file)
  return function(fmt, ...)
    error(("load.%s: %s: " .. fmt):format(what, file, ...), 0)
  end
end

local function argfail(what, fmt, ...)
  error(("load.%s: " .. fmt):format(what, ...), 0)
end

local function check_guest(what, g)
  local tname = typename(g)
  if tname ~= "moonvisor.Guest" then argfail(what, "expected a moonvisor.Guest, got %s", tname) end
  local ok, maps = pcall(g.mappings, g)
  if not ok then argfail(what, "%s", (tostring(maps):gsub("^guest:mappings: ", ""))) end
  return maps
end

-- Reads `src` (a path or { name =, data = }); returns its display name and bytes.
local function read_source(what, src)
  if type(src) == "table" then
    local name, data = src.name or "(data)", src.data
    if type(data) ~= "string" then argfail(what, "%s: data must be a string, got %s", tostring(name), type(data)) end
    return tostring(name), data
  end
  if type(src) ~= "string" then argfail(what, "path must be a string, got %s", type(src)) end
  local f, err = io.open(src, "rb")
  if not f then
    err = tostring(err)
    if err:sub(1, #src + 2) == src .. ": " then err = err:sub(#src + 3) end
    argfail(what, "%s: cannot open: %s", src, err)
  end
  local data, rerr = f:read("a")
  f:close()
  if not data then argfail(what, "%s: cannot read: %s", src, tostring(rerr)) end
  return src, data
end

-- What a loader taking options checks first: the guest, the options, the
-- source.  -> the guest's mappings, the options ({} for none), the source's
-- name and bytes, and a fail() naming the file.
local function begin(what, g, src, opts)
  local maps = check_guest(what, g)
  if opts ~= nil and type(opts) ~= "table" then argfail(what, "options must be a table, got %s", type(opts)) end
  local name, data = read_source(what, src)
  return maps, opts or {}, name, data, failer(what, name)
end

local function hex(n) return ("0x%x"):format(n) end

-- {======================================================= guest memory

-- The guest's mappings as sorted, merged [lo, hi) runs.  ram_only leaves out
-- readonly mappings (ROM) - used for the Multiboot memory map; limit, when
-- given, cuts the runs off there (linux.lua's mem option).
local function runs(maps, ram_only, limit)
  local list = {}
  for _, m in ipairs(maps) do
    if not (ram_only and m.readonly) then
      local hi = limit and math.min(m.gpa + m.size, limit) or m.gpa + m.size
      if hi > m.gpa then list[#list + 1] = { m.gpa, hi } end
    end
  end
  table.sort(list, function(a, b) return a[1] < b[1] end)
  local out = {}
  for _, r in ipairs(list) do
    local last = out[#out]
    if last and r[1] <= last[2] then
      if r[2] > last[2] then last[2] = r[2] end
    else
      out[#out + 1] = { r[1], r[2] }
    end
  end
  return out
end

-- True when [addr, addr+len) lies inside mapped memory.  addr and len are
-- unsigned 64-bit values held in Lua integers (negative = 2^63 and above).
local function mapped(mruns, addr, len)
  if addr < 0 or len < 0 or len > MAXI - addr then return false end
  if len == 0 then return true end
  for _, r in ipairs(mruns) do
    if addr >= r[1] and addr + len <= r[2] then return true end
  end
  return false
end

-- A plan: the writes a loader will make, checked as a whole before any is done.
--   { addr =, len =, data = string or nil (nil: zero fill), what = "segment 0x..+0x.." }
local function new_plan() return {} end

local function plan_add(plan, addr, len, data, what)
  if len > 0 then plan[#plan + 1] = { addr = addr, len = len, data = data, what = what } end
end

-- The first two entries of list ({ addr, [size] = n }) that overlap, in
-- address order; nothing when none do.
local function first_overlap(list, size)
  local sorted = {}
  for i, x in ipairs(list) do sorted[i] = x end
  table.sort(sorted, function(a, b) return a.addr < b.addr end)
  for i = 2, #sorted do
    local a, b = sorted[i - 1], sorted[i]
    if b.addr < a.addr + a[size] then return a, b end
  end
end

-- Every range mapped, no two ranges overlapping, none over the areas in
-- `reserved` (a machine's own data: { { addr, size, what }, ... }, optional);
-- `fail` raises.
local function plan_check(plan, mruns, fail, reserved)
  for _, p in ipairs(plan) do
    if not mapped(mruns, p.addr, p.len) then
      fail("%s is outside guest memory", p.what)
    end
    for _, r in ipairs(reserved or {}) do
      if p.addr < r.addr + r.size and r.addr < p.addr + p.len then
        fail("%s overlaps %s %s+%s", p.what, r.what, hex(r.addr), hex(r.size))
      end
    end
  end
  local a, b = first_overlap(plan, "len")
  if a then fail("%s and %s overlap", a.what, b.what) end
end

local ZERO_CHUNK = 0x10000
local zero_chunk = nil   -- ZERO_CHUNK zero bytes, made when first needed

-- n zero bytes.  string.rep copies once per repetition, so it repeats 8 bytes
-- to 256, then 256-byte blocks; and only as many as asked for (making
-- memory is what costs at start-up: the garbage collector's work grows with it).
local function zeros(n)
  local block = ("\0\0\0\0\0\0\0\0"):rep(32)
  return block:rep(n // 256) .. block:sub(1, n % 256)
end

local function plan_run(g, plan)
  for _, p in ipairs(plan) do
    if p.data then
      g:write(p.addr, p.data)
    else
      local a, left = p.addr, p.len
      while left > 0 do
        local n = math.min(left, ZERO_CHUNK)
        if n == ZERO_CHUNK then
          zero_chunk = zero_chunk or zeros(n)
          g:write(a, zero_chunk)
        else
          g:write(a, zeros(n))
        end
        a, left = a + n, left - n
      end
    end
  end
end

local function range_name(kind, addr, len)
  return ("%s %s+%s"):format(kind, hex(addr), hex(len))
end

-- {======================================================= ELF

local PT_LOAD, PT_INTERP, PT_DYNAMIC, PT_NOTE = 1, 3, 2, 4
local SHT_SYMTAB, SHT_NOBITS = 2, 8
local EM_386, EM_X86_64 = 3, 62

-- A bounds-checked reader over `data`: r(fmt, off, what) unpacks at the
-- 0-based offset off, or fails with "truncated <what>".
local function reader(data, fail)
  return function(fmt, off, what)
    local n = string.packsize(fmt)
    if off < 0 or off > #data - n then fail("truncated %s", what) end
    return string.unpack(fmt, data, off + 1)
  end
end

-- Unsigned 64-bit a+b <= limit (values as Lua integers, negative = huge).
local function within(off, len, limit)
  return off >= 0 and len >= 0 and len <= limit - off
end

-- Parses an ELF image; returns the plan (not yet checked against memory)
-- and the description.  opts.use_vaddr loads at p_vaddr instead of p_paddr.
local function elf_parse(data, fail, opts)
  local r = reader(data, fail)
  if #data < 16 or data:sub(1, 4) ~= "\127ELF" then fail("bad magic (not an ELF file)") end
  local class, endian, version = data:byte(5, 7)
  if class ~= 1 and class ~= 2 then fail("bad ELF class %d (want 1 = ELF32 or 2 = ELF64)", class) end
  if endian ~= 1 then fail("not little-endian (EI_DATA %d)", endian) end
  if version ~= 1 then fail("bad ELF version %d", version) end
  local is64 = class == 2
  local ehsize = is64 and 64 or 52
  if #data < ehsize then fail("truncated ELF header (%d of %d bytes)", #data, ehsize) end

  local e_type, e_machine, e_version = r("<I2I2I4", 16, "ELF header")
  local e_entry, e_phoff, e_shoff
  if is64 then
    e_entry, e_phoff, e_shoff = r("<i8i8i8", 24, "ELF header")
  else
    e_entry, e_phoff, e_shoff = r("<I4I4I4", 24, "ELF header")
  end
  -- e_flags, e_ehsize, then the table geometry.
  local _, _, e_phentsize, e_phnum, e_shentsize, e_shnum =
    r("<I4I2I2I2I2I2", is64 and 48 or 36, "ELF header")

  if e_type ~= 2 then fail("not an executable (e_type %d, want 2 = ET_EXEC)", e_type) end
  local want = is64 and EM_X86_64 or EM_386
  if e_machine ~= want then
    fail("unsupported machine %d for ELF%d (want %d = %s)", e_machine, is64 and 64 or 32, want,
         is64 and "x86-64" or "i386")
  end
  if e_version ~= 1 then fail("bad ELF version %d", e_version) end

  -- Program headers.
  local phsize = is64 and 56 or 32
  if e_phnum == 0 then fail("no program headers") end
  if e_phnum == 0xffff then fail("too many program headers (PN_XNUM is not supported)") end
  if e_phentsize < phsize then fail("bad program header size %d (want %d)", e_phentsize, phsize) end
  if not within(e_phoff, e_phnum * e_phentsize, #data) then fail("truncated program header table") end

  local plan, segments, notes = new_plan(), {}, {}
  local addr_field = opts.use_vaddr and "p_vaddr" or "p_paddr"
  for i = 0, e_phnum - 1 do
    local at = e_phoff + i * e_phentsize
    local p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz
    if is64 then
      p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz =
        r("<I4I4i8i8i8i8i8", at, "program header table")
    else
      p_type, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_flags =
        r("<I4I4I4I4I4I4I4", at, "program header table")
    end
    if p_type == PT_INTERP or p_type == PT_DYNAMIC then
      fail("program header %d: dynamically linked (PT_%s); only static executables load",
           i, p_type == PT_INTERP and "INTERP" or "DYNAMIC")
    end
    if p_type == PT_NOTE then
      if not within(p_offset, p_filesz, #data) then fail("program header %d: note past the end of the file", i) end
      local pos, last = p_offset, p_offset + p_filesz
      while pos + 12 <= last do
        local namesz, descsz, ntype = r("<I4I4I4", pos, "note")
        local name_at = pos + 12
        local desc_at = name_at + (namesz + 3) // 4 * 4
        local next_at = desc_at + (descsz + 3) // 4 * 4
        if desc_at + descsz > last then fail("program header %d: truncated note", i) end
        notes[#notes + 1] = { name = data:sub(name_at + 1, name_at + namesz):gsub("\0+$", ""), type = ntype,
                              desc = data:sub(desc_at + 1, desc_at + descsz) }
        pos = next_at
      end
    end
    if p_type == PT_LOAD then
      local addr = opts.use_vaddr and p_vaddr or p_paddr
      local what = range_name("segment", addr, p_memsz)
      if p_filesz < 0 or p_memsz < 0 or math.ult(p_memsz, p_filesz) then
        fail("%s: p_filesz %s is larger than p_memsz %s", what, hex(p_filesz), hex(p_memsz))
      end
      if not within(p_offset, p_filesz, #data) then
        fail("%s: file data %s+%s is past the end of the file (%d bytes)",
             what, hex(p_offset), hex(p_filesz), #data)
      end
      if p_memsz > 0 then
        if addr < 0 or p_memsz > MAXI - addr then fail("%s is outside guest memory", what) end
        plan_add(plan, addr, p_filesz, data:sub(p_offset + 1, p_offset + p_filesz), what)
        plan_add(plan, addr + p_filesz, p_memsz - p_filesz, nil, what)   -- the BSS
        segments[#segments + 1] = {
          addr = addr, paddr = p_paddr, vaddr = p_vaddr, filesz = p_filesz, memsz = p_memsz,
          offset = p_offset, flags = p_flags,
        }
      end
    end
  end
  if #segments == 0 then fail("no loadable (PT_LOAD) segments") end
  -- Segments overlapping each other (not just their file bytes vs bss parts).
  local a, b = first_overlap(segments, "memsz")
  if a then
    fail("overlapping segments: %s and %s", range_name("segment", a.addr, a.memsz), range_name("segment", b.addr, b.memsz))
  end

  -- Section headers: optional (e_shoff 0), but checked when present.  The
  -- symbol tables' places are checked now, their entries read when
  -- image.symbols or image.symbol_list is first asked for (a kernel's
  -- symbols cost more to read than the rest of the file, and a boot needs
  -- none of them).
  local symtabs = {}
  if e_shoff ~= 0 and e_shnum ~= 0 then
    local shsize = is64 and 64 or 40
    if e_shentsize < shsize then fail("bad section header size %d (want %d)", e_shentsize, shsize) end
    if not within(e_shoff, e_shnum * e_shentsize, #data) then fail("truncated section header table") end
    local function section(k)
      local at = e_shoff + k * e_shentsize
      if is64 then
        local _, ty, _, _, o, sz, link, _, _, es = r("<I4I4i8i8i8i8I4I4i8i8", at, "section header table")
        return ty, o, sz, link, es
      else
        local _, ty, _, _, o, sz, link, _, _, es = r("<I4I4I4I4I4I4I4I4I4I4", at, "section header table")
        return ty, o, sz, link, es
      end
    end
    local symsize = is64 and 24 or 16
    for k = 0, e_shnum - 1 do   -- sh_type first: a whole header is unpacked for symbol tables only
      if r("<I4", e_shoff + k * e_shentsize + 4, "section header table") == SHT_SYMTAB then
        local _, so, ssz, link, es = section(k)
        if es ~= 0 and es ~= symsize then fail("section %d: bad symbol size %d (want %d)", k, es, symsize) end
        if not within(so, ssz, #data) then fail("section %d: truncated symbol table", k) end
        if link <= 0 or link >= e_shnum then fail("section %d: bad string table index %d", k, link) end
        local sty, stro, strsz = section(link)
        if sty == SHT_NOBITS or not within(stro, strsz, #data) then
          fail("section %d: truncated string table", link)
        end
        symtabs[#symtabs + 1] = { syms = data:sub(so + 1, so + ssz), strs = data:sub(stro + 1, stro + strsz) }
      end
    end
  end

  local image = { entry = e_entry, class = is64 and 64 or 32, segments = segments, load_field = addr_field,
                  notes = notes }
  if #symtabs == 0 then
    image.symbols, image.symbol_list = {}, {}
  else
    setmetatable(image, { __index = function(t, k)
      if k ~= "symbols" and k ~= "symbol_list" then return nil end
      t.symbols, t.symbol_list = require("moonvisor.elf_symbols").read(symtabs, is64, fail)
      return rawget(t, k)
    end })
  end
  return plan, image
end

C.failer, C.argfail, C.check_guest, C.read_source, C.begin, C.hex = failer, argfail, check_guest, read_source, begin, hex
C.runs, C.new_plan, C.plan_add, C.plan_check, C.plan_run = runs, new_plan, plan_add, plan_check, plan_run
C.range_name, C.elf_parse = range_name, elf_parse

return C
