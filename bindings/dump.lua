-- dump.lua - precompiles one library module for build/moonvisor (`make`):
--
--   lua5.4 bindings/dump.lua SRC NAME OUT
--
-- compiles SRC as the chunk "@NAME" (the path build/moonvisor's searcher
-- finds, so messages and tracebacks name the source file) and writes
-- string.dump's bytecode to OUT without the names of local variables and
-- of upvalues other than _ENV.  Undumping interns every string a chunk
-- carries: local names were a third of the library's strings (0.7M of a
-- Multiboot start's instructions, bench/counts.sh), upvalue names another
-- sixth (0.09M).  What stays: line numbers (tracebacks say file:line),
-- _ENV's name (so "global 'x'" still names its variable), constants.  What
-- goes: "(local 'x')" and "(upvalue 'x')" in error messages (they say
-- "upvalue '?'"), the names of functions called through locals and
-- upvalues in tracebacks, which say "function <file:line>" instead, and
-- debug.getupvalue's names ("(no name)"); MOONVISOR_SCRIPTS=<dir of
-- scripts> makes build/moonvisor load the sources, with every name.
--
-- The format is Lua 5.4's (ldump.c): a header, then each function's source,
-- lines, sizes, code, constants, upvalues, nested functions and debug
-- information, sizes as big-endian 7-bit groups ending with the high bit set.
local src, name, out = arg[1], arg[2], arg[3]
local f = assert(io.open(src, "rb"))
local text = f:read("a"):gsub("^#[^\n]*", "", 1)
f:close()
local bc = string.dump(assert(load(text, "@" .. name)))

local pos, parts = 1, {}
local function copy(n)
  parts[#parts + 1] = bc:sub(pos, pos + n - 1)
  pos = pos + n
end
local function size()
  local x = 0
  repeat
    local b = bc:byte(pos)
    pos = pos + 1
    x = (x << 7) | (b & 0x7f)
  until b & 0x80 ~= 0
  return x
end
local function put_size(x)
  local t = { string.char(0x80 | (x & 0x7f)) }
  x = x >> 7
  while x ~= 0 do
    table.insert(t, 1, string.char(x & 0x7f))
    x = x >> 7
  end
  parts[#parts + 1] = table.concat(t)
end
local function copy_size() local x = size() put_size(x) return x end
local function copy_string() local n = copy_size() if n > 0 then copy(n - 1) end end
local function skip_string() local n = size() if n > 0 then pos = pos + n - 1 end end

local VNUMINT, VNUMFLT, VSHRSTR, VLNGSTR = 0x03, 0x13, 0x04, 0x14

local function dump_function()
  copy_string()                 -- source
  copy_size() copy_size()       -- linedefined, lastlinedefined
  copy(3)                       -- numparams, is_vararg, maxstacksize
  copy(4 * copy_size())         -- code
  for _ = 1, copy_size() do     -- constants
    local tag = bc:byte(pos)
    copy(1)
    if tag == VNUMINT or tag == VNUMFLT then copy(8)
    elseif tag == VSHRSTR or tag == VLNGSTR then copy_string() end
  end
  copy(3 * copy_size())         -- upvalues: instack, idx, kind
  for _ = 1, copy_size() do dump_function() end
  copy(copy_size())             -- lineinfo
  for _ = 1, 2 * copy_size() do copy_size() end   -- abslineinfo: pc, line
  for _ = 1, size() do skip_string() size() size() end   -- locvars: dropped
  put_size(0)
  for _ = 1, copy_size() do                        -- upvalue names: _ENV's only
    local n = size()
    if n > 0 and bc:sub(pos, pos + n - 2) == "_ENV" then put_size(n) copy(n - 1)
    else put_size(0) if n > 0 then pos = pos + n - 1 end end
  end
end

copy(4 + 1 + 1 + 6 + 3 + 8 + 8)   -- signature, version, format, LUAC_DATA, sizes, LUAC_INT, LUAC_NUM
copy(1)                           -- the main closure's upvalue count
dump_function()
assert(pos == #bc + 1, "dump.lua: " .. src .. ": bytecode not understood")
local stripped = table.concat(parts)
assert(load(stripped, "=" .. name, "b"), "dump.lua: " .. src .. ": rewritten bytecode does not load")
local o = assert(io.open(out, "wb"))
o:write(stripped)
o:close()
