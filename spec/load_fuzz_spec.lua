-- load_fuzz_spec.lua - the loaders against damaged input, seeded and
-- bounded (a few seconds): every build/guests kernel truncated at every
-- length, with random bits flipped, with random header fields, and random
-- bytes.  Each call either succeeds or raises a string starting with
-- "load.<loader>: " (never a Lua runtime error of another shape), and a
-- failed call leaves guest memory as it was: the RAM logs dirty pages, so
-- any write would show, and every 64th failure also compares the whole RAM
-- with zeros.  The outcome counts are printed.
local mv = require "moonvisor"
local H = require "helpers"
local files = require "moonvisor.files"
local load = require "moonvisor.load"

local GUESTS = "build/guests/"
local SEED = tonumber(os.getenv("LOAD_FUZZ_SEED")) or 20261125

local function slurp(path) return assert(files.read(path)) end

-- One guest for the whole run: 640 KiB at 0, 2 MiB at 1 MiB, dirty-logged.
-- After a successful load the pages it wrote are zeroed again.
local RAM = { { 0, 0xA0000 }, { 0x100000, 0x200000 } }
local g = H.guest()
for _, r in ipairs(RAM) do g:map(r[1], mv.vmo(r[2]), { log_dirty = true }) end

local function dirty_pages()
  local pages = {}
  for _, r in ipairs(RAM) do
    for _, p in ipairs(g:dirty_pages(r[1])) do pages[#pages + 1] = p end
  end
  return pages
end

local ZERO_PAGE = string.rep("\0", 0x1000)
local function reset()
  for _, p in ipairs(dirty_pages()) do g:write(p, ZERO_PAGE) end
  dirty_pages()
end

local function all_zero()
  for _, r in ipairs(RAM) do
    if g:read(r[1], r[2]) ~= string.rep("\0", r[2]) then return false end
  end
  return true
end

-- Runs one load; checks the shape of the outcome; counts it in stats.
local failures_seen = 0
local function try(stats, name, f, ...)
  local ok, e = pcall(f, g, ...)
  if ok then
    stats.ok = stats.ok + 1
    reset()
    return
  end
  stats.err = stats.err + 1
  local prefix = "load." .. name .. ": "
  if type(e) ~= "string" or e:sub(1, #prefix) ~= prefix or e:find("load%.lua:%d+:") then
    error(("load.%s raised an error of the wrong shape: %s"):format(name, tostring(e)), 2)
  end
  -- the problem, without the file name and numbers: what the counts group by
  local kind = e:sub(#prefix + 1):gsub("^[^:]*: ", "", 1):gsub("0x%x+", "N"):gsub("%d+", "N")
  stats.kinds[kind] = (stats.kinds[kind] or 0) + 1
  if #dirty_pages() ~= 0 then
    error(("load.%s wrote guest memory before failing with: %s"):format(name, e), 2)
  end
  failures_seen = failures_seen + 1
  if failures_seen % 64 == 0 then assert.is_true(all_zero(), "guest memory changed by: " .. e) end
end

local function new_stats() return { ok = 0, err = 0, kinds = {} } end

local function report(label, stats)
  local n = 0
  for _ in pairs(stats.kinds) do n = n + 1 end
  print(("load fuzz %-26s %5d loaded, %5d refused (%d kinds of error)"):format(label, stats.ok, stats.err, n))
end

local function flip(data, nbits)
  local b = { data:byte(1, -1) }
  for _ = 1, nbits do
    local i = math.random(#b)
    b[i] = b[i] ~ (1 << math.random(0, 7))
  end
  return string.char(table.unpack(b))
end

-- Overwrites a random 1, 2, 4 or 8-byte field in the first `span` bytes with
-- a value chosen to hit edges: 0, all-ones, small, or random.
local EDGES = { 0, -1, 1, 0x7fffffff, 0x80000000, 0x100000, 0xfffff000 }
local function poke(data, span)
  local size = ({ 1, 2, 4, 8 })[math.random(4)]
  local limit = math.min(#data, span) - size
  if limit < 0 then return data end
  local off = math.random(0, limit)
  local v = math.random(3) == 1 and EDGES[math.random(#EDGES)] or math.random(0, 0x7fffffff)
  if size < 8 then v = v & ((1 << (8 * size)) - 1) end
  return data:sub(1, off) .. string.pack((size < 8 and "<I" or "<i") .. size, v) .. data:sub(off + size + 1)
end

local function random_bytes(n)
  local t = {}
  for i = 1, n do t[i] = math.random(0, 255) end
  return string.char(table.unpack(t))
end

describe("the loaders under fuzzing", function()
  setup(function() math.randomseed(SEED) reset() end)

  it("load.elf: truncated, bit-flipped, poked and random ELF files fail cleanly or load", function()
    local stats = new_stats()
    for _, f in ipairs{ "elf32.elf", "elf64.elf", "multiboot.elf" } do
      local data = slurp(GUESTS .. f)
      for len = 0, #data do try(stats, "elf", load.elf, { name = f, data = data:sub(1, len) }) end
      for _ = 1, 300 do try(stats, "elf", load.elf, { name = f, data = flip(data, math.random(1, 4)) }) end
      for _ = 1, 300 do
        local d = data
        for _ = 1, math.random(1, 3) do d = poke(d, 0x100) end
        try(stats, "elf", load.elf, { name = f, data = d }, { use_vaddr = math.random(2) == 1 })
      end
    end
    for _ = 1, 200 do
      local head = ({ "", "\127ELF\1\1\1", "\127ELF\2\1\1" })[math.random(3)]
      try(stats, "elf", load.elf, { name = "random", data = head .. random_bytes(math.random(0, 600)) })
    end
    report("load.elf", stats)
    assert.is_true(stats.ok > 0 and stats.err > 0)
  end)

  it("load.multiboot: damaged ELF and a.out-kludge kernels fail cleanly or load", function()
    local stats = new_stats()
    local module = slurp(GUESTS .. "hello.bin")
    local function opts()
      local o = { cmdline = ("x"):rep(math.random(0, 40)) }
      if math.random(2) == 1 then o.modules = { { path = "hello.bin", data = module, cmdline = "m" } } end
      if math.random(4) == 1 then o.info_addr = math.random(0, 0x2ff) * 0x1000 + math.random(0, 3) * 4 end
      return o
    end
    for _, f in ipairs{ "multiboot.elf", "multiboot_aout.bin" } do
      local data = slurp(GUESTS .. f)
      for len = 0, #data do try(stats, "multiboot", load.multiboot, { name = f, data = data:sub(1, len) }, opts()) end
      for _ = 1, 400 do try(stats, "multiboot", load.multiboot, { name = f, data = flip(data, math.random(1, 4)) }, opts()) end
      for _ = 1, 400 do
        local d = data
        for _ = 1, math.random(1, 2) do d = poke(d, 0x100) end
        try(stats, "multiboot", load.multiboot, { name = f, data = d }, opts())
      end
    end
    -- random bytes behind a valid header with random a.out kludge fields
    for _ = 1, 300 do
      local flags = math.random(2) == 1 and 0x10003 or math.random(0, 0xffffffff)
      local hdr = string.pack("<I4I4I4", 0x1BADB002, flags, (-(0x1BADB002 + flags)) & 0xffffffff)
      local pad = ("\0"):rep(4 * math.random(0, 8))
      local fields = {}
      for i = 1, 5 do fields[i] = 0x100000 + math.random(-0x100, 0x3000) end
      local d = pad .. hdr .. string.pack("<I4I4I4I4I4", table.unpack(fields)) .. random_bytes(math.random(0, 300))
      try(stats, "multiboot", load.multiboot, { name = "random", data = d }, opts())
    end
    for _ = 1, 100 do try(stats, "multiboot", load.multiboot, { name = "random", data = random_bytes(math.random(0, 9000)) }) end
    report("load.multiboot", stats)
    assert.is_true(stats.ok > 0 and stats.err > 0)
  end)

  it("load.flat: random images at random addresses fail cleanly or load", function()
    local stats = new_stats()
    for _ = 1, 400 do
      local r = RAM[math.random(#RAM)]
      local addr = r[1] + r[2] + math.random(-0x3000, 0x100)
      try(stats, "flat", load.flat, { name = "r.bin", data = random_bytes(math.random(0, 0x2000)) }, addr)
    end
    report("load.flat", stats)
    assert.is_true(stats.ok > 0 and stats.err > 0)
  end)

  it("left the guest memory all zero", function()
    assert.same({}, dirty_pages())
    assert.is_true(all_zero())
  end)
end)
