-- moonvisor.load: putting kernels into guest memory.  Pure Lua on g:write.
--
--   local load = require "moonvisor.load"
--   load.flat(g, path, addr)        -> { entry = addr, size = n }
--   load.elf(g, path[, opts])       -> { entry, class = 32|64, segments, symbols, symbol_list }
--   load.multiboot(g, path[, opts]) -> { entry, mode = "protected", regs = { rax, rbx },
--                                        info_addr, info_size, modules, ... }
--                                        (moonvisor.multiboot does the work)
--   load.lookup(image, addr)        -> "name", offset   (nearest symbol at or below addr)
--
-- `path` is a file name, or { name = "kernel.elf", data = bytes } for an
-- image already in memory (name is only used in messages).
--
-- Every loader checks the whole file and plans every write before the first
-- g:write: a malformed file, or one that does not fit the guest's mappings,
-- raises "load.<loader>: <file>: <problem>" and leaves guest memory as it was.
-- Integers in files are read with explicit little-endian string.unpack
-- formats, each after a bounds check.
local load = {}

local C = require "moonvisor.load_common"
local check_guest, argfail, read_source, failer, begin = C.check_guest, C.argfail, C.read_source, C.failer, C.begin
local runs, new_plan, plan_add, plan_check, plan_run, range_name = C.runs, C.new_plan, C.plan_add, C.plan_check, C.plan_run, C.range_name
local elf_parse = C.elf_parse

-- {======================================================= load.flat

-- load.flat(g, path, addr) -> { entry = addr, size = n }
-- Copies the file's bytes to guest-physical addr.
function load.flat(g, src, addr)
  local maps = check_guest("flat", g)
  if math.type(addr) ~= "integer" then
    argfail("flat", "addr must be an integer, got %s", math.type(addr) or type(addr))
  end
  local name, data = read_source("flat", src)
  local fail = failer("flat", name)
  if #data == 0 then fail("empty file") end
  local plan = new_plan()
  plan_add(plan, addr, #data, data, range_name("image", addr, #data))
  plan_check(plan, runs(maps), fail)
  plan_run(g, plan)
  return { entry = addr, size = #data }
end

-- load.elf(g, path[, opts]) -> image
-- opts.use_vaddr = true loads each PT_LOAD segment at p_vaddr, not p_paddr;
-- opts.reserved = { { addr, size, what } } are ranges no segment may touch.
-- image = { entry, class = 32|64, segments = { { addr, paddr, vaddr, filesz,
-- memsz, offset, flags } }, symbols = { name = addr }, symbol_list = sorted
-- { name, addr, size, global } }.  The symbols are read (from copies of
-- the symbol and string tables the image keeps) when symbols or
-- symbol_list is first indexed; a malformed entry raises then
-- ("load.elf: <file>: symbol 3: ...").
function load.elf(g, src, opts)
  local maps, _, data, fail
  maps, opts, _, data, fail = begin("elf", g, src, opts)
  local plan, image = elf_parse(data, fail, opts)
  plan_check(plan, runs(maps), fail, opts.reserved)
  plan_run(g, plan)
  return image
end

-- load.lookup(image, addr) -> name, offset  (nil when no symbol is at or below addr)
function load.lookup(image, addr)
  local list = image and image.symbol_list
  if not list or #list == 0 then return nil end
  local lo, hi = 1, #list
  if math.ult(addr, list[1].addr) then return nil end
  while lo < hi do                       -- last entry with entry.addr <= addr
    local mid = (lo + hi + 1) // 2
    if math.ult(addr, list[mid].addr) then hi = mid - 1 else lo = mid end
  end
  return list[lo].name, addr - list[lo].addr
end

-- {======================================================= Multiboot v1

-- load.multiboot(g, path[, opts]): moonvisor.multiboot does the work (see
-- there for the options and what goes where in guest memory).
function load.multiboot(g, src, opts) return require("moonvisor.multiboot").load(g, src, opts) end

load.memory_runs = runs

-- The path of an example's guest image: the source tree's build/guests/ or,
-- once installed, the guests/ directory beside the script.  script is the
-- running script's path (arg[0]).
function load.guest_file(name, script)
  local here = (script or ""):match("^(.*)/[^/]*$") or "."
  for _, p in ipairs{ here .. "/../build/guests/" .. name, here .. "/guests/" .. name } do
    local f = io.open(p)
    if f then
      f:close()
      return p
    end
  end
  error(("load.guest_file: build/guests/%s is missing: run `make guests` first"):format(name), 2)
end

return load
