-- misuse_spec.lua - the "bad input" matrix: every public function and method
-- of the Lua API fed wrong types, non-integral floats, negative and huge
-- integers, bad sizes and alignments, overlapping mappings and traps,
-- unmapped addresses, oversized reads, closed objects, objects of the wrong
-- kind and VCPUs whose guest was closed.  Every error must name the function
-- ("guest:map") and the bad value or argument, and leave the object usable.
local mv = require "moonvisor"
local H = require "helpers"

local PAGE = 0x1000
local RAM = 0x10000           -- every fixture maps 64 KiB of RAM at guest-physical 0
local MAXI, MINI = math.maxinteger, math.mininteger

-- {====================================================== helpers

-- The message of an error, without the "file:line: " Lua puts in front.
local function strip(e)
  if type(e) == "string" then return (e:gsub("^[^%s:]+:%d+: ", "", 1)) end
  return e
end

-- Calls fn, which must raise; returns the message.
local function err_of(fn, ...)
  local ok, e = pcall(fn, ...)
  assert.is_false(ok, "expected an error, but the call succeeded")
  assert.is_string(e, "expected a string error, got " .. type(e))
  return strip(e)
end

local function escape(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end

-- Calls fn, which must raise an error whose message starts with prefix and
-- names each of the values (integers in decimal or in hex).  Returns it.
local function assert_err(fn, prefix, ...)
  local e = err_of(fn)
  assert.matches("^" .. escape(prefix), e)
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    local found
    if math.type(v) == "integer" then
      found = e:find(tostring(v), 1, true) or e:find(("0x%x"):format(v), 1, true)
        or e:find(("0x%X"):format(v), 1, true)
    else
      found = e:find(tostring(v), 1, true)
    end
    assert.truthy(found, ("message %q does not name %s"):format(e, tostring(v)))
  end
  return e
end

-- Values that are not integers, with what the message must say after "got ".
local function bad_ints(with_nil)
  local t = {
    { "a string", "x", "string" },
    { "a numeric string", "4096", "string" },   -- addresses are never strings
    { "a table", {}, "table" },
    { "a boolean", true, "boolean" },
    { "a non-integral float", 1.5, "1.5" },
    { "an out-of-range float", 2.0 ^ 63, "9.2233720368548e+18" },
    { "infinity", math.huge, "inf" },
  }
  if with_nil then t[#t + 1] = { "nil", nil, "nil" } end
  return t
end

-- Checks that an object still works after an error.
local function vmo_usable(v)
  v:u32(8, 0xdeadbeef)
  assert.equals(0xdeadbeef, v:u32(8))
  assert.equals("\xef\xbe\xad\xde", v:read(8, 4))
end

local PROBE = 0x7f000000   -- a guest-physical address no case uses
local function guest_usable(g)
  local probe = mv.vmo(PAGE)
  g:map(PROBE, probe)
  g:u32(PROBE, 0x12345678)
  assert.equals(0x12345678, g:u32(PROBE))
  g:write(PROBE + 8, "ok")
  assert.equals("ok", g:read(PROBE + 8, 2))
  g:unmap(PROBE)
  probe:close()
end

local function vcpu_usable(cpu)
  cpu.rbx = 0x1234
  assert.equals(0x1234, cpu.rbx)
  assert.equals(0x1234, cpu:read_state().rbx)
  assert.is_table(cpu:sregs())
end

local Guest, Vmo, Trap
local Vcpu = mv.Vcpu
do
  local g = H.guest()
  Guest = getmetatable(g).__index
  Trap = getmetatable(g:trap("io", 0, 1, function() end)).__index
  g:close()
  local v = mv.vmo(PAGE)
  Vmo = getmetatable(v).__index
  v:close()
end

-- A guest with RAM at 0 and a real-mode VCPU at 0x1000 running source.
local function machine(source)
  local g = H.guest()
  local ram = mv.vmo(RAM)
  g:map(0, ram)
  g:write(0x1000, H.asm(source or "hlt"))
  return g, ram, g:vcpu{ entry = 0x1000 }
end

-- }======================================================

describe("mv.vmo", function()
  for _, c in ipairs(bad_ints(true)) do
    it("errors on " .. c[1] .. " as size", function()
      assert.has_error(function() mv.vmo(c[2]) end, "mv.vmo: size must be an integer, got " .. c[3])
      vmo_usable(mv.vmo(RAM))
    end)
  end

  it("errors when called without a size", function()
    assert.has_error(function() mv.vmo() end, "mv.vmo: size must be an integer, got no value")
  end)

  it("accepts a float that holds an integer", function()
    assert.equals(2 * PAGE, #mv.vmo(8192.0))
  end)

  it("rounds a size up to whole pages", function()
    assert.equals(PAGE, #mv.vmo(1))
  end)

  it("errors on a zero size", function()
    assert.has_error(function() mv.vmo(0) end, "mv.vmo: size must be positive, got 0")
  end)

  it("errors on a negative size", function()
    assert.has_error(function() mv.vmo(-4096) end, "mv.vmo: size must be positive, got -4096")
  end)

  it("errors on math.mininteger as size", function()
    assert.has_error(function() mv.vmo(MINI) end, "mv.vmo: size must be positive, got " .. MINI)
  end)

  it("errors on math.maxinteger as size, naming mv.vmo", function()
    assert_err(function() mv.vmo(MAXI) end, "mv.vmo: ", MAXI)
    vmo_usable(mv.vmo(RAM))
  end)

  it("errors on a size just above 1 TiB, naming mv.vmo", function()
    assert_err(function() mv.vmo((1 << 40) + 1) end, "mv.vmo: ", (1 << 40) + 1)
  end)
end)

describe("#vmo", function()
  it("errors on a closed vmo", function()
    local v = mv.vmo(RAM)
    v:close()
    assert.has_error(function() return #v end, "#vmo: attempt to use a closed vmo")
  end)

  it("errors on a Guest, naming its type", function()
    local g = H.guest()
    assert.has_error(function() return getmetatable(mv.vmo(PAGE)).__len(g) end,
                     "#vmo: expected a moonvisor.Vmo, got moonvisor.Guest")
    guest_usable(g)
    g:close()
  end)

  it("errors on a string", function()
    assert.has_error(function() return getmetatable(mv.vmo(PAGE)).__len("x") end,
                     "#vmo: expected a moonvisor.Vmo, got string")
  end)
end)

describe("vmo:read", function()
  local v
  before_each(function() v = mv.vmo(RAM) end)
  after_each(function() v:close() end)

  for _, c in ipairs(bad_ints(true)) do
    it("errors on " .. c[1] .. " as offset", function()
      assert.has_error(function() v:read(c[2], 4) end, "vmo:read: offset must be an integer, got " .. c[3])
      vmo_usable(v)
    end)
    it("errors on " .. c[1] .. " as length", function()
      assert.has_error(function() v:read(0, c[2]) end, "vmo:read: length must be an integer, got " .. c[3])
      vmo_usable(v)
    end)
  end

  it("accepts floats that hold integers", function()
    v:write(4, "abcd")
    assert.equals("abcd", v:read(4.0, 4.0))
  end)

  it("errors on a negative offset", function()
    assert.has_error(function() v:read(-1, 1) end, "vmo:read: range -1+1 outside the 65536-byte vmo")
    vmo_usable(v)
  end)

  it("errors on a negative length", function()
    assert.has_error(function() v:read(0, -1) end, "vmo:read: range 0+-1 outside the 65536-byte vmo")
    vmo_usable(v)
  end)

  it("errors on an offset past the end", function()
    assert.has_error(function() v:read(RAM, 1) end, "vmo:read: range 65536+1 outside the 65536-byte vmo")
    vmo_usable(v)
  end)

  it("errors on a range that runs past the end", function()
    assert.has_error(function() v:read(RAM - 2, 4) end, "vmo:read: range 65534+4 outside the 65536-byte vmo")
    vmo_usable(v)
  end)

  it("returns the empty string at the very end", function()
    assert.equals("", v:read(RAM, 0))
  end)

  it("errors on math.maxinteger as offset", function()
    assert.has_error(function() v:read(MAXI, 1) end,
                     "vmo:read: range " .. MAXI .. "+1 outside the 65536-byte vmo")
  end)

  it("errors on math.mininteger as offset", function()
    assert.has_error(function() v:read(MINI, 1) end,
                     "vmo:read: range " .. MINI .. "+1 outside the 65536-byte vmo")
  end)

  it("errors on an oversized length without allocating it", function()
    local before = collectgarbage("count")
    assert.has_error(function() v:read(0, 1 << 40) end, "vmo:read: range 0+1099511627776 outside the 65536-byte vmo")
    assert.is_true(collectgarbage("count") - before < 1024)
    assert.has_error(function() v:read(0, MAXI) end, "vmo:read: range 0+" .. MAXI .. " outside the 65536-byte vmo")
    vmo_usable(v)
  end)

  it("errors on a Guest as self, naming its type", function()
    local g = H.guest()
    assert.has_error(function() Vmo.read(g, 0, 4) end, "vmo:read: expected a moonvisor.Vmo, got moonvisor.Guest")
    guest_usable(g)
    g:close()
  end)

  it("errors on a string as self", function()
    assert.has_error(function() Vmo.read("abc", 0, 1) end, "vmo:read: expected a moonvisor.Vmo, got string")
  end)
end)

describe("vmo:write", function()
  local v
  before_each(function() v = mv.vmo(RAM) end)
  after_each(function() v:close() end)

  for _, c in ipairs(bad_ints(true)) do
    it("errors on " .. c[1] .. " as offset", function()
      assert.has_error(function() v:write(c[2], "x") end, "vmo:write: offset must be an integer, got " .. c[3])
      vmo_usable(v)
    end)
  end

  for _, c in ipairs{ { "a table", {} }, { "a boolean", false }, { "nil", nil } } do
    it("errors on " .. c[1] .. " as data, naming vmo:write", function()
      local e = assert_err(function() v:write(0, c[2]) end, "vmo:write: ", type(c[2]))
      assert.matches("string", e)
      vmo_usable(v)
    end)
  end

  it("errors on a negative offset", function()
    assert.has_error(function() v:write(-1, "x") end, "vmo:write: offset -1 is negative")
    vmo_usable(v)
  end)

  it("errors on math.mininteger as offset", function()
    assert.has_error(function() v:write(MINI, "x") end, "vmo:write: offset " .. MINI .. " is negative")
  end)

  it("errors on a range past the end and writes nothing", function()
    v:write(RAM - 4, "keep")
    assert.has_error(function() v:write(RAM - 2, "abcd") end,
                     "vmo:write: range 0xfffe+0x4 outside the 65536-byte vmo")
    assert.equals("keep", v:read(RAM - 4, 4))
    vmo_usable(v)
  end)

  it("errors on math.maxinteger as offset", function()
    assert.has_error(function() v:write(MAXI, "x") end,
                     "vmo:write: range 0x7fffffffffffffff+0x1 outside the 65536-byte vmo")
    vmo_usable(v)
  end)

  it("accepts an empty string at the very end", function()
    v:write(RAM, "")
    vmo_usable(v)
  end)

  it("errors on a Guest as self, naming its type", function()
    local g = H.guest()
    assert.has_error(function() Vmo.write(g, 0, "x") end, "vmo:write: expected a moonvisor.Vmo, got moonvisor.Guest")
    g:close()
  end)
end)

-- The integer accessors u8..u64 of a Vmo and of a Guest share these cases:
-- obj() is the object under test, usable(o) checks it still works, where
-- names the offset argument in the spec's title.
local function integer_accessor_cases(fn, name, bytes, obj, usable, where)
  for _, c in ipairs(bad_ints(true)) do
    it("errors on " .. c[1] .. " as " .. where, function()
      local o = obj()
      assert.has_error(function() o[name](o, c[2]) end, fn .. ": offset must be an integer, got " .. c[3])
      usable(o)
    end)
  end
  for _, c in ipairs(bad_ints(false)) do
    it("errors on " .. c[1] .. " as value and writes nothing", function()
      local o = obj()
      o[name](o, 0, 0x55)
      assert.has_error(function() o[name](o, 0, c[2]) end, fn .. ": value must be an integer, got " .. c[3])
      assert.equals(0x55, o[name](o, 0))
      usable(o)
    end)
  end
  it("accepts floats that hold integers", function()
    local o = obj()
    o[name](o, 8.0, 42.0)
    assert.equals(42, o[name](o, 8))
  end)
  if bytes < 8 then
    local bits = 8 * bytes
    it("errors on a value above " .. bits .. " bits", function()
      local o, big = obj(), 1 << bits
      assert.has_error(function() o[name](o, 0, big) end, ("%s: value %d does not fit in %d bits"):format(fn, big, bits))
      usable(o)
    end)
    it("errors on a value below the signed " .. bits .. "-bit range", function()
      local o, small = obj(), -(1 << (bits - 1)) - 1
      assert.has_error(function() o[name](o, 0, small) end, ("%s: value %d does not fit in %d bits"):format(fn, small, bits))
      usable(o)
    end)
  end
end

for _, w in ipairs{ { "u8", 1 }, { "u16", 2 }, { "u32", 4 }, { "u64", 8 } } do
  local name, bytes = w[1], w[2]
  local fn = "vmo:" .. name

  describe(fn, function()
    local v
    before_each(function() v = mv.vmo(RAM) end)
    after_each(function() v:close() end)

    integer_accessor_cases(fn, name, bytes, function() return v end, vmo_usable, "offset")

    if bytes < 8 then
      local bits = 8 * bytes
      it("stores a negative value that fits as two's complement", function()
        v[name](v, 0, -1)
        assert.equals((1 << bits) - 1, v[name](v, 0))
      end)
    else
      it("round-trips math.mininteger and math.maxinteger", function()
        v:u64(0, MINI)
        assert.equals(MINI, v:u64(0))
        v:u64(0, MAXI)
        assert.equals(MAXI, v:u64(0))
      end)
    end

    it("errors on a read past the end, naming " .. fn, function()
      assert_err(function() v[name](v, RAM) end, fn .. ": ", RAM)
      vmo_usable(v)
    end)

    it("errors on a write past the end, naming " .. fn, function()
      assert_err(function() v[name](v, RAM, 1) end, fn .. ": ", RAM)
      vmo_usable(v)
    end)

    if bytes > 1 then
      it("errors on an access that straddles the end, naming " .. fn, function()
        assert_err(function() v[name](v, RAM - 1) end, fn .. ": ", RAM - 1)
        vmo_usable(v)
      end)
    end

    it("errors on a negative offset, naming " .. fn, function()
      assert_err(function() v[name](v, -1) end, fn .. ": ", -1)
      vmo_usable(v)
    end)

    it("errors on math.maxinteger as offset, naming " .. fn, function()
      assert_err(function() v[name](v, MAXI, 0) end, fn .. ": ", MAXI)
      vmo_usable(v)
    end)

    it("errors on a closed vmo", function()
      local c = mv.vmo(PAGE)
      c:close()
      assert.has_error(function() c[name](c, 0) end, fn .. ": attempt to use a closed vmo")
      assert.has_error(function() c[name](c, 0, 1) end, fn .. ": attempt to use a closed vmo")
    end)

    it("errors on a Guest as self, naming its type", function()
      local g = H.guest()
      g:map(0, v)
      assert.has_error(function() Vmo[name](g, 0) end, fn .. ": expected a moonvisor.Vmo, got moonvisor.Guest")
      guest_usable(g)
      g:close()
    end)

    it("errors on nil as self", function()
      assert.has_error(function() Vmo[name](nil, 0) end, fn .. ": expected a moonvisor.Vmo, got nil")
    end)
  end)
end

describe("vmo:close", function()
  it("can be called twice", function()
    local v = mv.vmo(PAGE)
    v:close()
    v:close()
    assert.equals("Vmo(closed)", tostring(v))
  end)

  it("errors on a Guest, naming vmo:close and the type", function()
    local g = H.guest()
    assert.has_error(function() Vmo.close(g) end, "vmo:close: expected a moonvisor.Vmo, got moonvisor.Guest")
    guest_usable(g)
    g:close()
  end)

  it("errors on a string, naming vmo:close", function()
    assert.has_error(function() Vmo.close("x") end, "vmo:close: expected a moonvisor.Vmo, got string")
  end)
end)

describe("a closed vmo", function()
  local v
  before_each(function()
    v = mv.vmo(RAM)
    v:close()
  end)

  it("refuses read, write and every integer accessor", function()
    assert.has_error(function() v:read(0, 1) end, "vmo:read: attempt to use a closed vmo")
    assert.has_error(function() v:write(0, "x") end, "vmo:write: attempt to use a closed vmo")
    for _, n in ipairs{ "u8", "u16", "u32", "u64" } do
      assert.has_error(function() v[n](v, 0) end, "vmo:" .. n .. ": attempt to use a closed vmo")
    end
  end)

  it("cannot be mapped", function()
    local g = H.guest()
    assert.has_error(function() g:map(0, v) end, "guest:map: attempt to use a closed vmo")
    assert.same({}, g:mappings())
    guest_usable(g)
    g:close()
  end)

  it("stays readable through a mapping made before the close", function()
    local g = H.guest()
    local w = mv.vmo(RAM)
    w:write(0, "live")
    g:map(0, w)
    w:close()
    assert.equals("live", g:read(0, 4))
    g:write(0, "more")
    assert.equals("more", g:read(0, 4))
    g:close()
  end)
end)

-- {====================================================== guests

describe("mv.guest", function()
  for _, c in ipairs{ { "a string", "x", "string" }, { "a number", 1, "number" }, { "a boolean", true, "boolean" } } do
    it("errors on " .. c[1] .. " as options", function()
      assert.has_error(function() mv.guest(c[2]) end, "mv.guest: options must be a table, got " .. c[3])
    end)
  end

  it("errors on a non-boolean irqchip", function()
    assert.has_error(function() mv.guest{ irqchip = "yes", backend = H.backend } end,
                     "mv.guest: option 'irqchip' must be a boolean, got string")
    assert.has_error(function() mv.guest{ irqchip = 1, backend = H.backend } end,
                     "mv.guest: option 'irqchip' must be a boolean, got number")
  end)

  it("errors on an unknown backend name", function()
    assert.has_error(function() mv.guest{ backend = "xen" } end, 'mv.guest: backend must be "kvm" or "soft", got xen')
  end)

  it("errors on a backend that is not a string", function()
    assert.has_error(function() mv.guest{ backend = 5 } end, 'mv.guest: backend must be "kvm" or "soft", got 5')
    assert.has_error(function() mv.guest{ backend = {} } end, 'mv.guest: backend must be "kvm" or "soft", got table')
  end)

  if H.backend == "soft" then
    it("errors on irqchip = true with the soft backend, naming mv.guest", function()
      assert_err(function() mv.guest{ backend = "soft", irqchip = true } end, "mv.guest: ", "irqchip")
      guest_usable(H.guest())
    end)
  end
end)

describe("guest:map", function()
  local g, ram
  before_each(function()
    g = H.guest()
    ram = mv.vmo(RAM)
  end)
  after_each(function() g:close() end)

  for _, c in ipairs(bad_ints(true)) do
    it("errors on " .. c[1] .. " as gpa", function()
      assert.has_error(function() g:map(c[2], ram) end, "guest:map: gpa must be an integer, got " .. c[3])
      assert.same({}, g:mappings())
      guest_usable(g)
    end)
  end
  for _, c in ipairs(bad_ints(false)) do
    it("errors on " .. c[1] .. " as offset", function()
      assert.has_error(function() g:map(0, ram, { offset = c[2] }) end,
                       "guest:map: offset must be an integer, got " .. c[3])
      guest_usable(g)
    end)
    it("errors on " .. c[1] .. " as size", function()
      assert.has_error(function() g:map(0, ram, { size = c[2] }) end,
                       "guest:map: size must be an integer, got " .. c[3])
      guest_usable(g)
    end)
  end

  for _, c in ipairs{ { "a string", "x", "string" }, { "a number", 4096, "number" }, { "a boolean", true, "boolean" } } do
    it("errors on " .. c[1] .. " as options, naming guest:map", function()
      assert_err(function() g:map(0, ram, c[2]) end, "guest:map: ", c[3])
      guest_usable(g)
    end)
  end

  for _, k in ipairs{ "readonly", "log_dirty" } do
    it("errors on a non-boolean " .. k, function()
      assert.has_error(function() g:map(0, ram, { [k] = 1 }) end,
                       "guest:map: option '" .. k .. "' must be a boolean, got number")
      assert.same({}, g:mappings())
      guest_usable(g)
    end)
  end

  for _, c in ipairs{ { "nil", nil, "nil" }, { "a string", "ram", "string" }, { "a number", 4096, "number" },
                      { "a table", {}, "table" } } do
    it("errors on " .. c[1] .. " as vmo", function()
      assert.has_error(function() g:map(0, c[2]) end, "guest:map: expected a moonvisor.Vmo, got " .. c[3])
      guest_usable(g)
    end)
  end

  it("errors on a missing vmo", function()
    assert.has_error(function() g:map(0) end, "guest:map: expected a moonvisor.Vmo, got no value")
  end)

  it("errors on a Guest as vmo, naming its type", function()
    local other = H.guest()
    assert.has_error(function() g:map(0, other) end, "guest:map: expected a moonvisor.Vmo, got moonvisor.Guest")
    other:close()
    guest_usable(g)
  end)

  it("errors on a Trap as vmo, naming its type", function()
    local t = g:trap("io", 0x10, 1, function() end)
    assert.has_error(function() g:map(0, t) end, "guest:map: expected a moonvisor.Vmo, got moonvisor.Trap")
    guest_usable(g)
  end)

  it("errors on a Vcpu as self, naming its type", function()
    local cpu = g:vcpu{ entry = 0x1000 }
    assert.has_error(function() Guest.map(cpu, 0, ram) end, "guest:map: expected a moonvisor.Guest, got moonvisor.Vcpu")
    cpu:close()
    guest_usable(g)
  end)

  it("errors on a Vmo as self, naming its type", function()
    assert.has_error(function() Guest.map(ram, 0, ram) end, "guest:map: expected a moonvisor.Guest, got moonvisor.Vmo")
    assert.has_error(function() H.guest().map(ram, 0, ram) end,
                     "guest:map: expected a moonvisor.Guest, got moonvisor.Vmo")
    vmo_usable(ram)
  end)

  it("accepts floats that hold integers", function()
    g:map(0.0, ram, { offset = 4096.0, size = 8192.0 })
    assert.same({ { gpa = 0, size = 0x2000, offset = 0x1000, readonly = false, log_dirty = false } }, g:mappings())
  end)

  it("errors on a negative gpa", function()
    assert.has_error(function() g:map(-4096, ram) end, "guest:map: negative gpa, offset or size (-4096, 0, 65536)")
    guest_usable(g)
  end)

  it("errors on math.mininteger as gpa", function()
    assert.has_error(function() g:map(MINI, ram) end,
                     "guest:map: negative gpa, offset or size (" .. MINI .. ", 0, 65536)")
    guest_usable(g)
  end)

  it("errors on a negative offset", function()
    assert.has_error(function() g:map(0, ram, { offset = -4096 }) end,
                     "guest:map: negative gpa, offset or size (0, -4096, 65536)")
    guest_usable(g)
  end)

  it("errors on a negative size", function()
    assert.has_error(function() g:map(0, ram, { size = -4096 }) end,
                     "guest:map: negative gpa, offset or size (0, 0, -4096)")
    guest_usable(g)
  end)

  it("errors on math.maxinteger as gpa", function()
    assert.has_error(function() g:map(MAXI, ram) end,
                     "guest:map: gpa 0x7fffffffffffffff, offset 0x0 and size 0x10000 must be multiples of the page size (0x1000)")
    guest_usable(g)
  end)

  it("errors on the largest page-aligned gpa", function()
    assert.has_error(function() g:map(MAXI - 0xfff, ram) end,
                     "guest:map: range 0x7ffffffffffff000+0x10000 exceeds the guest-physical limit 2^52")
    guest_usable(g)
  end)

  it("errors on a gpa at the 2^52 limit", function()
    assert.has_error(function() g:map(1 << 52, ram) end,
                     "guest:map: range 0x10000000000000+0x10000 exceeds the guest-physical limit 2^52")
    guest_usable(g)
  end)

  it("errors on a range that crosses the 2^52 limit", function()
    assert.has_error(function() g:map((1 << 52) - PAGE, ram) end,
                     "guest:map: range 0xffffffffff000+0x10000 exceeds the guest-physical limit 2^52")
    guest_usable(g)
  end)

  it("errors on an unaligned gpa", function()
    assert.has_error(function() g:map(0x1001, ram) end,
                     "guest:map: gpa 0x1001, offset 0x0 and size 0x10000 must be multiples of the page size (0x1000)")
    guest_usable(g)
  end)

  it("errors on an unaligned offset", function()
    assert.has_error(function() g:map(0, ram, { offset = 0x10, size = PAGE }) end,
                     "guest:map: gpa 0x0, offset 0x10 and size 0x1000 must be multiples of the page size (0x1000)")
    guest_usable(g)
  end)

  it("errors on an unaligned size", function()
    assert.has_error(function() g:map(0, ram, { size = 100 }) end,
                     "guest:map: gpa 0x0, offset 0x0 and size 0x64 must be multiples of the page size (0x1000)")
    guest_usable(g)
  end)

  it("errors on a zero size", function()
    assert.has_error(function() g:map(0, ram, { size = 0 }) end, "guest:map: size must be positive")
    assert.same({}, g:mappings())
    guest_usable(g)
  end)

  it("errors on a size larger than the vmo", function()
    assert.has_error(function() g:map(0, ram, { size = 2 * RAM }) end,
                     "guest:map: offset 0x0 + size 0x20000 exceeds the vmo (0x10000 bytes)")
    guest_usable(g)
  end)

  it("errors on an offset past the end of the vmo", function()
    assert.has_error(function() g:map(0, ram, { offset = 2 * RAM, size = PAGE }) end,
                     "guest:map: offset 0x20000 + size 0x1000 exceeds the vmo (0x10000 bytes)")
    guest_usable(g)
  end)

  it("errors on an offset plus the default size past the end", function()
    assert.has_error(function() g:map(0, ram, { offset = PAGE }) end,
                     "guest:map: offset 0x1000 + size 0x10000 exceeds the vmo (0x10000 bytes)")
    guest_usable(g)
  end)

  it("errors on an offset and size whose sum wraps around", function()
    assert.has_error(function() g:map(0, ram, { offset = PAGE, size = MAXI - 0xfff }) end,
                     "guest:map: offset 0x1000 + size 0x7ffffffffffff000 exceeds the vmo (0x10000 bytes)")
    guest_usable(g)
  end)

  describe("over an existing mapping", function()
    local small
    before_each(function()
      g:map(0x20000, ram)            -- 0x20000..0x30000
      small = mv.vmo(2 * PAGE)
    end)

    for _, c in ipairs{
      { "the same range", 0x20000, RAM },
      { "a range overlapping its start", 0x1f000, 2 * PAGE },
      { "a range overlapping its end", 0x2f000, 2 * PAGE },
      { "a range inside it", 0x24000, PAGE },
      { "a range containing it", 0x10000, 0x30000 },
    } do
      it("errors on " .. c[1], function()
        local big = mv.vmo(c[3])
        assert.has_error(function() g:map(c[2], big, { size = c[3] }) end,
                         ("guest:map: range 0x%x+0x%x overlaps the mapping at 0x20000"):format(c[2], c[3]))
        assert.equals(1, #g:mappings())
        guest_usable(g)
      end)
    end

    it("accepts adjacent ranges on both sides", function()
      g:map(0x1e000, small)
      g:map(0x30000, small)
      assert.equals(3, #g:mappings())
      g:write(0x1ffff, ("x"):rep(0x10002))   -- across all three
    end)

    it("accepts the range again after an unmap", function()
      g:unmap(0x20000)
      g:map(0x21000, small)
      assert.equals(1, #g:mappings())
    end)
  end)

  describe("over a trap", function()
    local small
    before_each(function() small = mv.vmo(2 * PAGE) end)

    for _, kind in ipairs{ "mem", "bell" } do
      it("errors on a range holding a " .. kind .. " trap", function()
        g:trap(kind, 0x20010, 4, function() end)
        assert.has_error(function() g:map(0x20000, small) end,
                         "guest:map: range 0x20000+0x2000 overlaps a mem or bell trap")
        assert.same({}, g:mappings())
        guest_usable(g)
      end)

      it("errors on a range covering the last byte of a " .. kind .. " trap", function()
        g:trap(kind, 0x1f000, PAGE + 1, function() end)
        assert.has_error(function() g:map(0x20000, small) end,
                         "guest:map: range 0x20000+0x2000 overlaps a mem or bell trap")
        guest_usable(g)
      end)

      it("accepts a range next to a " .. kind .. " trap", function()
        g:trap(kind, 0x1f000, PAGE, function() end)
        g:map(0x20000, small)
        g:map(0x1d000, small)
        assert.equals(2, #g:mappings())
      end)

      it("accepts the range once the " .. kind .. " trap is removed", function()
        local t = g:trap(kind, 0x20000, PAGE, function() end)
        assert.has_error(function() g:map(0x20000, small) end,
                         "guest:map: range 0x20000+0x2000 overlaps a mem or bell trap")
        t:remove()
        g:map(0x20000, small)
        assert.equals(1, #g:mappings())
      end)
    end

    it("accepts a range at the address of an io trap (another address space)", function()
      g:trap("io", 0x0, 0x10000, function() end)
      g:map(0, ram)
      assert.equals(1, #g:mappings())
    end)
  end)

  it("errors past the 64th mapping", function()
    local page = mv.vmo(PAGE)
    for i = 0, 63 do g:map(i * 2 * PAGE, page) end
    assert.has_error(function() g:map(0x1000000, page) end, "guest:map: too many mappings (at most 64)")
    assert.equals(64, #g:mappings())
    g:unmap(0)
    g:map(0x1000000, page)
    assert.equals(64, #g:mappings())
  end)

  it("errors on a closed guest", function()
    g:close()
    assert.has_error(function() g:map(0, ram) end, "guest:map: attempt to use a closed guest")
    vmo_usable(ram)
  end)
end)

describe("guest:unmap", function()
  local g, ram
  before_each(function()
    g = H.guest()
    ram = mv.vmo(RAM)
    g:map(0, ram)
  end)
  after_each(function() g:close() end)

  for _, c in ipairs(bad_ints(true)) do
    it("errors on " .. c[1] .. " as gpa", function()
      assert.has_error(function() g:unmap(c[2]) end, "guest:unmap: gpa must be an integer, got " .. c[3])
      assert.equals(1, #g:mappings())
      guest_usable(g)
    end)
  end

  it("errors on an address where nothing is mapped", function()
    assert.has_error(function() g:unmap(0x20000) end, "guest:unmap: no mapping starts at 0x20000")
    guest_usable(g)
  end)

  it("errors on an address inside a mapping", function()
    assert.has_error(function() g:unmap(0x1000) end, "guest:unmap: no mapping starts at 0x1000")
    assert.equals(1, #g:mappings())
    guest_usable(g)
  end)

  it("errors on the second unmap of the same address", function()
    g:unmap(0)
    assert.has_error(function() g:unmap(0) end, "guest:unmap: no mapping starts at 0x0")
    guest_usable(g)
  end)

  it("errors on a negative gpa", function()
    assert_err(function() g:unmap(-4096) end, "guest:unmap: ", -4096)
    guest_usable(g)
  end)

  it("errors on math.maxinteger and math.mininteger", function()
    assert_err(function() g:unmap(MAXI) end, "guest:unmap: ", MAXI)
    assert_err(function() g:unmap(MINI) end, "guest:unmap: ", MINI)
    guest_usable(g)
  end)

  it("errors on a closed guest", function()
    g:close()
    assert.has_error(function() g:unmap(0) end, "guest:unmap: attempt to use a closed guest")
  end)

  it("errors on a Vmo as self, naming its type", function()
    assert.has_error(function() Guest.unmap(ram, 0) end, "guest:unmap: expected a moonvisor.Guest, got moonvisor.Vmo")
    assert.equals(1, #g:mappings())
  end)
end)

describe("guest:mappings", function()
  it("errors on a closed guest", function()
    local g = H.guest()
    g:close()
    assert.has_error(function() g:mappings() end, "guest:mappings: attempt to use a closed guest")
  end)

  it("errors on a Vmo as self, naming its type", function()
    assert.has_error(function() Guest.mappings(mv.vmo(PAGE)) end,
                     "guest:mappings: expected a moonvisor.Guest, got moonvisor.Vmo")
  end)

  it("errors on nil as self", function()
    assert.has_error(function() Guest.mappings(nil) end, "guest:mappings: expected a moonvisor.Guest, got nil")
  end)
end)

describe("guest:read", function()
  local g, ram
  before_each(function()
    g = H.guest()
    ram = mv.vmo(RAM)
    g:map(0, ram)
  end)
  after_each(function() g:close() end)

  for _, c in ipairs(bad_ints(true)) do
    it("errors on " .. c[1] .. " as gpa", function()
      assert.has_error(function() g:read(c[2], 4) end, "guest:read: gpa must be an integer, got " .. c[3])
      guest_usable(g)
    end)
    it("errors on " .. c[1] .. " as length", function()
      assert.has_error(function() g:read(0, c[2]) end, "guest:read: length must be an integer, got " .. c[3])
      guest_usable(g)
    end)
  end

  it("accepts floats that hold integers", function()
    g:write(16, "abcd")
    assert.equals("abcd", g:read(16.0, 4.0))
  end)

  it("errors on a negative length", function()
    assert.has_error(function() g:read(0, -1) end, "guest:read: length -1 is negative")
    assert.has_error(function() g:read(0, MINI) end, "guest:read: length " .. MINI .. " is negative")
    guest_usable(g)
  end)

  it("errors on an unmapped address", function()
    assert.has_error(function() g:read(0x20000, 4) end, "guest:read: guest-physical address 0x20000 is not mapped")
    guest_usable(g)
  end)

  it("errors on a range that runs off the end of the mapping", function()
    assert.has_error(function() g:read(RAM - 2, 4) end, "guest:read: guest-physical address 0x10000 is not mapped")
    guest_usable(g)
  end)

  it("errors on a range across a hole between two mappings", function()
    g:map(0x20000, mv.vmo(PAGE))
    assert.has_error(function() g:read(RAM - 2, 0x10004) end,
                     "guest:read: guest-physical address 0x10000 is not mapped")
    guest_usable(g)
  end)

  it("reads across two adjacent mappings", function()
    local next = mv.vmo(PAGE)
    next:write(0, "cd")
    ram:write(RAM - 2, "ab")
    g:map(RAM, next)
    assert.equals("abcd", g:read(RAM - 2, 4))
  end)

  it("errors on an oversized length without allocating it", function()
    local before = collectgarbage("count")
    assert.has_error(function() g:read(0, 1 << 40) end, "guest:read: guest-physical address 0x10000 is not mapped")
    assert.has_error(function() g:read(0, MAXI) end, "guest:read: guest-physical address 0x10000 is not mapped")
    assert.is_true(collectgarbage("count") - before < 1024)
    guest_usable(g)
  end)

  it("errors on a negative gpa", function()
    assert.has_error(function() g:read(-1, 1) end, "guest:read: range 0xffffffffffffffff+0x1 wraps around")
    assert_err(function() g:read(-4096, 1) end, "guest:read: ", -4096)
    guest_usable(g)
  end)

  it("errors on math.maxinteger as gpa", function()
    assert.has_error(function() g:read(MAXI, 1) end,
                     "guest:read: guest-physical address 0x7fffffffffffffff is not mapped")
    guest_usable(g)
  end)

  it("errors on a closed guest", function()
    g:close()
    assert.has_error(function() g:read(0, 1) end, "guest:read: attempt to use a closed guest")
    vmo_usable(ram)
  end)

  it("errors on a Vmo as self, naming its type", function()
    assert.has_error(function() Guest.read(ram, 0, 1) end, "guest:read: expected a moonvisor.Guest, got moonvisor.Vmo")
    guest_usable(g)
  end)
end)

describe("guest:write", function()
  local g, ram
  before_each(function()
    g = H.guest()
    ram = mv.vmo(RAM)
    g:map(0, ram)
  end)
  after_each(function() g:close() end)

  for _, c in ipairs(bad_ints(true)) do
    it("errors on " .. c[1] .. " as gpa", function()
      assert.has_error(function() g:write(c[2], "x") end, "guest:write: gpa must be an integer, got " .. c[3])
      guest_usable(g)
    end)
  end

  for _, c in ipairs{ { "a table", {} }, { "a boolean", true }, { "nil", nil } } do
    it("errors on " .. c[1] .. " as data, naming guest:write", function()
      local e = assert_err(function() g:write(0, c[2]) end, "guest:write: ", type(c[2]))
      assert.matches("string", e)
      guest_usable(g)
    end)
  end

  it("errors on an unmapped address", function()
    assert.has_error(function() g:write(0x20000, "x") end, "guest:write: guest-physical address 0x20000 is not mapped")
    guest_usable(g)
  end)

  it("errors on a range that runs off the mapping and writes nothing", function()
    ram:write(RAM - 2, "kp")
    assert.has_error(function() g:write(RAM - 2, "abcd") end,
                     "guest:write: guest-physical address 0x10000 is not mapped")
    assert.equals("kp", ram:read(RAM - 2, 2))
    guest_usable(g)
  end)

  it("errors on a negative gpa", function()
    assert.has_error(function() g:write(-1, "ab") end, "guest:write: range 0xffffffffffffffff+0x2 wraps around")
    assert_err(function() g:write(-4096, "ab") end, "guest:write: ", -4096)
    guest_usable(g)
  end)

  it("errors on math.maxinteger as gpa", function()
    assert.has_error(function() g:write(MAXI, "a") end,
                     "guest:write: guest-physical address 0x7fffffffffffffff is not mapped")
    guest_usable(g)
  end)

  it("lets the host write read-only mapped memory", function()
    local ro = mv.vmo(PAGE)
    g:map(0x20000, ro, { readonly = true })
    g:write(0x20000, "host")
    assert.equals("host", ro:read(0, 4))
  end)

  it("errors on a closed guest", function()
    g:close()
    assert.has_error(function() g:write(0, "x") end, "guest:write: attempt to use a closed guest")
    vmo_usable(ram)
  end)

  it("errors on a Vmo as self, naming its type", function()
    assert.has_error(function() Guest.write(ram, 0, "x") end, "guest:write: expected a moonvisor.Guest, got moonvisor.Vmo")
    guest_usable(g)
  end)
end)

for _, w in ipairs{ { "u8", 1 }, { "u16", 2 }, { "u32", 4 }, { "u64", 8 } } do
  local name, bytes = w[1], w[2]
  local fn = "guest:" .. name

  describe(fn, function()
    local g, ram
    before_each(function()
      g = H.guest()
      ram = mv.vmo(RAM)
      g:map(0, ram)
    end)
    after_each(function() g:close() end)

    integer_accessor_cases(fn, name, bytes, function() return g end, guest_usable, "gpa")

    it("errors on a read of an unmapped address, naming " .. fn, function()
      assert_err(function() g[name](g, 0x20000) end, fn .. ": ", 0x20000)
      guest_usable(g)
    end)

    it("errors on a write to an unmapped address, naming " .. fn, function()
      assert_err(function() g[name](g, 0x20000, 1) end, fn .. ": ", 0x20000)
      guest_usable(g)
    end)

    if bytes > 1 then
      it("errors on an access that runs off the mapping, naming " .. fn, function()
        ram:u8(RAM - 1, 0x77)
        assert_err(function() g[name](g, RAM - 1, 0) end, fn .. ": ", RAM)
        assert.equals(0x77, ram:u8(RAM - 1))
        guest_usable(g)
      end)
    end

    it("errors on a negative gpa, naming " .. fn, function()
      assert_err(function() g[name](g, -1) end, fn .. ": ", -1)
      guest_usable(g)
    end)

    it("errors on math.maxinteger as gpa, naming " .. fn, function()
      assert_err(function() g[name](g, MAXI) end, fn .. ": ", MAXI)
      guest_usable(g)
    end)

    it("errors on a closed guest", function()
      g:close()
      assert.has_error(function() g[name](g, 0) end, fn .. ": attempt to use a closed guest")
      assert.has_error(function() g[name](g, 0, 1) end, fn .. ": attempt to use a closed guest")
    end)

    it("errors on a Vmo as self, naming its type", function()
      assert.has_error(function() Guest[name](ram, 0) end, fn .. ": expected a moonvisor.Guest, got moonvisor.Vmo")
      vmo_usable(ram)
    end)
  end)
end

describe("guest:dirty_pages", function()
  local g, ram
  before_each(function()
    g = H.guest()
    ram = mv.vmo(RAM)
    g:map(0, ram)
  end)
  after_each(function() g:close() end)

  for _, c in ipairs(bad_ints(true)) do
    it("errors on " .. c[1] .. " as gpa", function()
      assert.has_error(function() g:dirty_pages(c[2]) end, "guest:dirty_pages: gpa must be an integer, got " .. c[3])
      guest_usable(g)
    end)
  end

  it("errors on an address where no mapping starts", function()
    assert.has_error(function() g:dirty_pages(0x20000) end, "guest:dirty_pages: no mapping starts at 0x20000")
    assert.has_error(function() g:dirty_pages(0x1000) end, "guest:dirty_pages: no mapping starts at 0x1000")
    guest_usable(g)
  end)

  it("errors on a mapping made without log_dirty", function()
    assert.has_error(function() g:dirty_pages(0) end,
                     "guest:dirty_pages: the mapping at 0x0 was not mapped with log_dirty")
    guest_usable(g)
  end)

  it("errors on negative and huge addresses", function()
    assert_err(function() g:dirty_pages(-4096) end, "guest:dirty_pages: ", -4096)
    assert_err(function() g:dirty_pages(MAXI) end, "guest:dirty_pages: ", MAXI)
    assert_err(function() g:dirty_pages(MINI) end, "guest:dirty_pages: ", MINI)
    guest_usable(g)
  end)

  it("keeps working on a log_dirty mapping after errors", function()
    g:map(0x20000, mv.vmo(4 * PAGE), { log_dirty = true })
    pcall(g.dirty_pages, g, 0x21000)
    g:write(0x22000, "x")
    assert.same({ 0x22000 }, g:dirty_pages(0x20000))
    assert.same({}, g:dirty_pages(0x20000))
  end)

  it("errors on a closed guest", function()
    g:close()
    assert.has_error(function() g:dirty_pages(0) end, "guest:dirty_pages: attempt to use a closed guest")
  end)

  it("errors on a Vmo as self, naming its type", function()
    assert.has_error(function() Guest.dirty_pages(ram, 0) end,
                     "guest:dirty_pages: expected a moonvisor.Guest, got moonvisor.Vmo")
  end)
end)

describe("guest:trap", function()
  local g, ram
  local function h() end
  before_each(function()
    g = H.guest()
    ram = mv.vmo(RAM)
    g:map(0, ram)
  end)
  after_each(function() g:close() end)

  -- A trap can still be set where the failed call tried.
  local function trap_usable(kind, addr, size)
    local t = g:trap(kind, addr, size, h)
    t:remove()
    guest_usable(g)
  end

  for _, c in ipairs{ { "nil", nil, "nil" }, { "a table", {}, "table" }, { "a boolean", true, "boolean" } } do
    it("errors on " .. c[1] .. " as kind, naming guest:trap", function()
      assert_err(function() g:trap(c[2], 0x10, 1, h) end, "guest:trap: ", c[3])
      trap_usable("io", 0x10, 1)
    end)
  end

  it("errors on an unknown kind", function()
    assert.has_error(function() g:trap("port", 0x10, 1, h) end,
                     'guest:trap: kind must be "io", "mem" or "bell", got "port"')
    assert.has_error(function() g:trap("IO", 0x10, 1, h) end,
                     'guest:trap: kind must be "io", "mem" or "bell", got "IO"')
    trap_usable("io", 0x10, 1)
  end)

  for _, c in ipairs(bad_ints(true)) do
    it("errors on " .. c[1] .. " as addr", function()
      assert.has_error(function() g:trap("io", c[2], 1, h) end, "guest:trap: addr must be an integer, got " .. c[3])
      trap_usable("io", 0x10, 1)
    end)
    it("errors on " .. c[1] .. " as size", function()
      assert.has_error(function() g:trap("mem", 0x20000, c[2], h) end,
                       "guest:trap: size must be an integer, got " .. c[3])
      trap_usable("mem", 0x20000, 4)
    end)
  end

  for _, c in ipairs{ { "nil", nil, "nil" }, { "a number", 1, "number" }, { "a string", "h", "string" },
                      { "a table without __call", {}, "table" } } do
    it("errors on " .. c[1] .. " as handler", function()
      assert.has_error(function() g:trap("io", 0x10, 1, c[2]) end, "guest:trap: handler must be a function, got " .. c[3])
      trap_usable("io", 0x10, 1)
    end)
  end

  it("errors on a missing handler", function()
    assert.has_error(function() g:trap("io", 0x10, 1) end, "guest:trap: handler must be a function, got no value")
  end)

  it("accepts a callable table as handler", function()
    local t = g:trap("io", 0x10, 1, setmetatable({}, { __call = function() end }))
    t:remove()
  end)

  it("errors on a negative addr", function()
    assert.has_error(function() g:trap("io", -1, 1, h) end, "guest:trap: bad range -1+1 (addr >= 0, size > 0)")
    assert.has_error(function() g:trap("mem", MINI, 1, h) end,
                     "guest:trap: bad range " .. MINI .. "+1 (addr >= 0, size > 0)")
    trap_usable("io", 0, 1)
  end)

  it("errors on a zero size", function()
    assert.has_error(function() g:trap("io", 0x10, 0, h) end, "guest:trap: bad range 16+0 (addr >= 0, size > 0)")
    assert.has_error(function() g:trap("bell", 0x20000, 0, h) end,
                     "guest:trap: bad range 131072+0 (addr >= 0, size > 0)")
    trap_usable("io", 0x10, 1)
  end)

  it("errors on a negative size", function()
    assert.has_error(function() g:trap("mem", 0x20000, -4, h) end,
                     "guest:trap: bad range 131072+-4 (addr >= 0, size > 0)")
    trap_usable("mem", 0x20000, 4)
  end)

  it("errors on a port range past 0xffff", function()
    assert.has_error(function() g:trap("io", 0x10000, 1, h) end, "guest:trap: io range 0x10000+0x1 exceeds 0x10000")
    assert.has_error(function() g:trap("io", 0xffff, 2, h) end, "guest:trap: io range 0xffff+0x2 exceeds 0x10000")
    trap_usable("io", 0xffff, 1)
  end)

  it("errors on math.maxinteger as addr or size", function()
    assert.has_error(function() g:trap("io", MAXI, 1, h) end,
                     "guest:trap: io range 0x7fffffffffffffff+0x1 exceeds 0x10000")
    assert.has_error(function() g:trap("io", 0x10, MAXI, h) end,
                     "guest:trap: io range 0x10+0x7fffffffffffffff exceeds 0x10000")
    assert.has_error(function() g:trap("mem", 0x20000, MAXI, h) end,
                     "guest:trap: mem range 0x20000+0x7fffffffffffffff exceeds 0x10000000000000")
    assert.has_error(function() g:trap("bell", MAXI, 1, h) end,
                     "guest:trap: bell range 0x7fffffffffffffff+0x1 exceeds 0x10000000000000")
    trap_usable("mem", 0x20000, 4)
  end)

  it("errors on a mem range at the 2^52 limit", function()
    assert.has_error(function() g:trap("mem", 1 << 52, 1, h) end,
                     "guest:trap: mem range 0x10000000000000+0x1 exceeds 0x10000000000000")
    trap_usable("mem", (1 << 52) - 1, 1)
  end)

  for _, c in ipairs{
    { "the same ports", 0x3f8, 8 },
    { "its last port", 0x3ff, 1 },
    { "its first port from below", 0x3f0, 9 },
    { "a range inside it", 0x3fa, 2 },
    { "a range containing it", 0x300, 0x200 },
  } do
    it("errors on an io trap over " .. c[1] .. " of another", function()
      g:trap("io", 0x3f8, 8, h)
      assert.has_error(function() g:trap("io", c[2], c[3], h) end,
                       ("guest:trap: io range 0x%x+0x%x overlaps an existing trap"):format(c[2], c[3]))
      trap_usable("io", 0x400, 1)
      trap_usable("io", 0x3f7, 1)
    end)
  end

  for _, c in ipairs{ { "mem", "mem" }, { "mem", "bell" }, { "bell", "mem" }, { "bell", "bell" } } do
    it("errors on a " .. c[2] .. " trap overlapping a " .. c[1] .. " trap", function()
      g:trap(c[1], 0x20000, 0x100, h)
      assert.has_error(function() g:trap(c[2], 0x200f0, 0x20, h) end,
                       ("guest:trap: %s range 0x200f0+0x20 overlaps an existing trap"):format(c[2]))
      trap_usable(c[2], 0x20100, 0x20)
    end)
  end

  it("accepts an io trap and a mem trap at the same address", function()
    g:trap("io", 0x100, 4, h)
    g:trap("mem", 0x20100, 4, h)
    g:trap("io", 0x20, 4, h)
    g:trap("mem", 0x20020, 4, h)
  end)

  it("accepts the range again after remove", function()
    local t = g:trap("io", 0x60, 1, h)
    t:remove()
    g:trap("io", 0x60, 1, h)
  end)

  for _, kind in ipairs{ "mem", "bell" } do
    it("errors on a " .. kind .. " trap over mapped memory", function()
      assert.has_error(function() g:trap(kind, 0x8000, 0x10, h) end,
                       ("guest:trap: %s range 0x8000+0x10 overlaps memory mapped at 0x0 (map memory around device ranges)"):format(kind))
      trap_usable(kind, 0x10000, 0x10)
    end)

    it("errors on a " .. kind .. " trap whose last byte is mapped", function()
      g:map(0x30000, mv.vmo(PAGE))
      assert.has_error(function() g:trap(kind, 0x2fff0, 0x11, h) end,
                       ("guest:trap: %s range 0x2fff0+0x11 overlaps memory mapped at 0x30000 (map memory around device ranges)"):format(kind))
      trap_usable(kind, 0x2fff0, 0x10)
    end)

    it("accepts a " .. kind .. " trap over memory once it is unmapped", function()
      assert.has_error(function() g:trap(kind, 0x0, 4, h) end,
                       ("guest:trap: %s range 0x0+0x4 overlaps memory mapped at 0x0 (map memory around device ranges)"):format(kind))
      g:unmap(0)
      trap_usable(kind, 0x0, 4)
    end)
  end

  it("accepts an io trap at a port number that is also mapped memory", function()
    trap_usable("io", 0x1000, 0x10)
  end)

  it("errors on a closed guest", function()
    g:close()
    assert.has_error(function() g:trap("io", 0x10, 1, h) end, "guest:trap: attempt to use a closed guest")
  end)

  it("errors on a Vmo as self, naming its type", function()
    assert.has_error(function() Guest.trap(ram, "io", 0x10, 1, h) end,
                     "guest:trap: expected a moonvisor.Guest, got moonvisor.Vmo")
    trap_usable("io", 0x10, 1)
  end)
end)

describe("trap:remove", function()
  it("can be called twice", function()
    local g = H.guest()
    local t = g:trap("io", 0x10, 1, function() end)
    t:remove()
    t:remove()
    assert.equals("Trap(removed)", tostring(t))
    g:trap("io", 0x10, 1, function() end)
    g:close()
  end)

  it("is harmless after the guest was closed", function()
    local g = H.guest()
    local t = g:trap("mem", 0x20000, 4, function() end)
    g:close()
    t:remove()
    assert.equals("Trap(removed)", tostring(t))
  end)

  it("errors on a Guest, naming trap:remove and the type", function()
    local g = H.guest()
    assert.has_error(function() Trap.remove(g) end, "trap:remove: expected a moonvisor.Trap, got moonvisor.Guest")
    guest_usable(g)
    g:close()
  end)

  it("errors on nil, naming trap:remove", function()
    assert.has_error(function() Trap.remove(nil) end, "trap:remove: expected a moonvisor.Trap, got nil")
  end)
end)

describe("guest:vcpu", function()
  local g, ram
  before_each(function()
    g = H.guest()
    ram = mv.vmo(RAM)
    g:map(0, ram)
  end)
  after_each(function() g:close() end)

  local function vcpu_ok()
    local cpu = g:vcpu{ entry = 0x1000 }
    assert.equals(0x1000, cpu.rip)
    cpu:close()
  end

  for _, c in ipairs{ { "a string", "x", "string" }, { "a number", 0x1000, "number" }, { "a boolean", true, "boolean" } } do
    it("errors on " .. c[1] .. " as options, naming guest:vcpu", function()
      assert_err(function() g:vcpu(c[2]) end, "guest:vcpu: ", c[3])
      vcpu_ok()
    end)
  end

  for _, c in ipairs(bad_ints(false)) do
    it("errors on " .. c[1] .. " as entry", function()
      assert.has_error(function() g:vcpu{ entry = c[2] } end, "guest:vcpu: entry must be an integer, got " .. c[3])
      vcpu_ok()
    end)
  end

  it("accepts a float entry that holds an integer", function()
    local cpu = g:vcpu{ entry = 4096.0 }
    assert.equals(0x1000, cpu.rip)
    cpu:close()
  end)

  it("errors on a negative entry", function()
    assert.has_error(function() g:vcpu{ entry = -1 } end, "guest:vcpu: entry -1 is negative")
    assert.has_error(function() g:vcpu{ entry = MINI } end, "guest:vcpu: entry " .. MINI .. " is negative")
    vcpu_ok()
  end)

  it("errors on a real-mode entry above 0xffff", function()
    assert.has_error(function() g:vcpu{ entry = 0x10000 } end, "guest:vcpu: real-mode entry 0x10000 is above 0xffff")
    assert.has_error(function() g:vcpu{ entry = MAXI } end,
                     "guest:vcpu: real-mode entry 0x7fffffffffffffff is above 0xffff")
    vcpu_ok()
  end)

  it("errors on an unknown mode", function()
    assert.has_error(function() g:vcpu{ mode = "hyper" } end,
                     'guest:vcpu: unknown mode hyper (modes: "long", "protected", "real", "user")')
    vcpu_ok()
  end)

  it("errors on a mode that is not a string", function()
    assert.has_error(function() g:vcpu{ mode = 64 } end,
                     'guest:vcpu: unknown mode 64 (modes: "long", "protected", "real", "user")')
    vcpu_ok()
  end)

  it("errors on a closed guest", function()
    g:close()
    assert.has_error(function() g:vcpu{ entry = 0x1000 } end, "guest:vcpu: attempt to use a closed guest")
  end)

  it("errors on a Vmo as self, naming its type", function()
    assert.has_error(function() Guest.vcpu(ram, { entry = 0x1000 }) end,
                     "guest:vcpu: expected a moonvisor.Guest, got moonvisor.Vmo")
    assert.has_error(function() H.guest().vcpu(ram) end, "guest:vcpu: expected a moonvisor.Guest, got moonvisor.Vmo")
    vcpu_ok()
  end)
end)

describe("guest:backend", function()
  it("errors on a closed guest", function()
    local g = H.guest()
    assert.equals(H.backend, g:backend())
    g:close()
    assert.has_error(function() g:backend() end, "guest:backend: attempt to use a closed guest")
  end)

  it("errors on a Vmo as self, naming its type", function()
    assert.has_error(function() Guest.backend(mv.vmo(PAGE)) end,
                     "guest:backend: expected a moonvisor.Guest, got moonvisor.Vmo")
  end)
end)

describe("guest:close", function()
  it("can be called twice", function()
    local g = H.guest()
    g:close()
    g:close()
    assert.equals("Guest(closed)", tostring(g))
  end)

  it("errors on a Vmo, naming guest:close and the type", function()
    local v = mv.vmo(RAM)
    assert.has_error(function() Guest.close(v) end, "guest:close: expected a moonvisor.Guest, got moonvisor.Vmo")
    vmo_usable(v)
  end)

  it("errors on a string, naming guest:close", function()
    assert.has_error(function() Guest.close("g") end, "guest:close: expected a moonvisor.Guest, got string")
  end)
end)

describe("a closed guest", function()
  local g, ram
  before_each(function()
    g = H.guest()
    ram = mv.vmo(RAM)
    g:map(0, ram)
    g:close()
  end)

  it("refuses every method but close", function()
    local calls = {
      map = { 0x20000, mv.vmo(PAGE) }, unmap = { 0 }, mappings = {}, read = { 0, 1 }, write = { 0, "x" },
      u8 = { 0 }, u16 = { 0 }, u32 = { 0 }, u64 = { 0 }, dirty_pages = { 0 },
      trap = { "io", 0x10, 1, function() end }, vcpu = { { entry = 0x1000 } }, backend = {},
    }
    for name, args in pairs(calls) do
      assert.has_error(function() g[name](g, table.unpack(args)) end, "guest:" .. name .. ": attempt to use a closed guest")
    end
    g:close()
  end)

  it("released its mappings but not the vmo", function()
    vmo_usable(ram)
  end)
end)

-- {====================================================== VCPUs

describe("vcpu:enter", function()
  local g, ram, cpu
  before_each(function() g, ram, cpu = machine("in al, 0x10\nout 0x11, al\nhlt") end)
  after_each(function()
    cpu:close()
    g:close()
  end)

  it("errors when a handler enters its own VCPU, and resumes", function()
    g:trap("io", 0x10, 1, function(_, c) c:enter() end)
    local e = err_of(cpu.enter, cpu)
    assert.matches("^vcpu:enter: io handler for port 0x10 %(in, 1 bytes%) failed: "
                   .. ".-vcpu:enter: called from inside a trap handler of the same VCPU", e)
    vcpu_usable(cpu)
  end)

  it("errors when a handler closes its own VCPU", function()
    g:trap("io", 0x10, 1, function(_, c) c:close() end)
    local e = err_of(cpu.enter, cpu)
    assert.matches("^vcpu:enter: io handler for port 0x10 %(in, 1 bytes%) failed: "
                   .. ".-vcpu:close: called from inside a trap handler of this VCPU", e)
    vcpu_usable(cpu)
  end)

  for _, c in ipairs{ { "a string", "x", "string" }, { "a numeric string", "5", "string" },
                      { "a table", {}, "table" }, { "a boolean", true, "boolean" },
                      { "a non-integral float", 1.5, "a non%-integer number" } } do
    it("errors when a handler returns " .. c[1] .. " for an IN", function()
      local t = g:trap("io", 0x10, 1, function() return c[2] end)
      local e = err_of(cpu.enter, cpu)
      assert.matches("^vcpu:enter: io handler for port 0x10 %(in, 1 bytes%) failed: handler returned "
                     .. c[3] .. " for an io read of 0x10 %(expected an integer or nil%)", e)
      vcpu_usable(cpu)
      t:remove()
      g:trap("io", 0x10, 1, function() return 7 end)
      local x = cpu:enter()
      if x.type == "io" then x = cpu:enter() end   -- the unclaimed OUT of the value read
      assert.equals("hlt", x.type)
    end)
  end

  it("errors when a mem handler returns a string for a read, naming the address", function()
    local mg, _, mcpu = machine("mov ax, 0x2000\nmov ds, ax\nmov ebx, [0x10]\nhlt")
    mg:trap("mem", 0x20000, 0x100, function() return "x" end)
    local e = err_of(mcpu.enter, mcpu)
    assert.matches("^vcpu:enter: mem handler for 0x20010 %(read, 4 bytes%) failed: handler returned string "
                   .. "for a mem read of 0x20010 %(expected an integer or nil%)", e)
    vcpu_usable(mcpu)
    mcpu:close()
    mg:close()
  end)

  it("errors when a handler closes the guest, then refuses to enter", function()
    g:trap("io", 0x10, 1, function() g:close() end)
    assert.has_error(function() cpu:enter() end, "vcpu:enter: the guest was closed by a trap handler")
    assert.has_error(function() cpu:enter() end, "vcpu:enter: attempt to use a vcpu of a closed guest")
    assert.has_error(function() g:map(0, ram) end, "guest:map: attempt to use a closed guest")
    vmo_usable(ram)
  end)

  it("errors on a Guest as self, naming its type", function()
    assert.has_error(function() Vcpu.enter(g) end, "vcpu:enter: expected a moonvisor.Vcpu, got moonvisor.Guest")
    guest_usable(g)
    vcpu_usable(cpu)
  end)

  it("errors on a string as self", function()
    assert.has_error(function() Vcpu.enter("cpu") end, "vcpu:enter: expected a moonvisor.Vcpu, got string")
  end)
end)

describe("vcpu:run", function()
  local g, ram, cpu
  before_each(function() g, ram, cpu = machine("hlt") end)
  after_each(function()
    cpu:close()
    g:close()
  end)

  it("errors on a vcpu of a closed guest, naming vcpu:run", function()
    g:close()
    assert.has_error(function() cpu:run() end, "vcpu:run: attempt to use a vcpu of a closed guest")
  end)

  it("errors on a closed vcpu, naming vcpu:run", function()
    local other = g:vcpu{ entry = 0x1000 }
    other:close()
    assert.has_error(function() other:run() end, "vcpu:run: attempt to use a closed vcpu")
    assert.equals("hlt", cpu:run().type)
  end)

  it("errors on a Guest as self, naming vcpu:run and the type", function()
    assert.has_error(function() Vcpu.run(g) end, "vcpu:run: expected a moonvisor.Vcpu, got moonvisor.Guest")
    guest_usable(g)
  end)

  it("errors on nil as self, naming vcpu:run", function()
    assert.has_error(function() Vcpu.run(nil) end, "vcpu:run: expected a moonvisor.Vcpu, got nil")
  end)
end)

describe("vcpu:interrupt", function()
  local g, ram, cpu
  before_each(function() g, ram, cpu = machine("hlt") end)
  after_each(function()
    cpu:close()
    g:close()
  end)

  for _, c in ipairs(bad_ints(true)) do
    it("errors on " .. c[1] .. " as vector", function()
      assert.has_error(function() cpu:interrupt(c[2]) end, "vcpu:interrupt: vector must be an integer, got " .. c[3])
      vcpu_usable(cpu)
    end)
  end

  it("errors on a missing vector", function()
    assert.has_error(function() cpu:interrupt() end, "vcpu:interrupt: vector must be an integer, got no value")
  end)

  for _, v in ipairs{ -1, 256, MAXI, MINI } do
    it("errors on vector " .. v, function()
      assert.has_error(function() cpu:interrupt(v) end, "vcpu:interrupt: vector " .. v .. " is not in 0..255")
      vcpu_usable(cpu)
    end)
  end

  it("accepts vectors 0, 255 and a float that holds an integer", function()
    cpu:interrupt(0)
    cpu:interrupt(255)
    cpu:interrupt(32.0)
  end)

  it("errors on a Guest as self, naming its type", function()
    assert.has_error(function() Vcpu.interrupt(g, 32) end, "vcpu:interrupt: expected a moonvisor.Vcpu, got moonvisor.Guest")
  end)
end)

describe("vcpu:kick", function()
  local g, ram, cpu
  before_each(function() g, ram, cpu = machine("hlt") end)
  after_each(function()
    cpu:close()
    g:close()
  end)

  it("can be called twice before enter", function()
    cpu:kick()
    cpu:kick()
    assert.equals("kick", cpu:enter().type)
    assert.equals("hlt", cpu:enter().type)
  end)

  it("errors on a Guest as self, naming its type", function()
    assert.has_error(function() Vcpu.kick(g) end, "vcpu:kick: expected a moonvisor.Vcpu, got moonvisor.Guest")
    vcpu_usable(cpu)
  end)

  it("errors on a number as self", function()
    assert.has_error(function() Vcpu.kick(1) end, "vcpu:kick: expected a moonvisor.Vcpu, got number")
  end)
end)

describe("vcpu:read_state", function()
  local g, ram, cpu
  before_each(function() g, ram, cpu = machine("hlt") end)
  after_each(function()
    cpu:close()
    g:close()
  end)

  it("ignores extra arguments", function()
    assert.equals(0x1000, cpu:read_state("x", {}).rip)
  end)

  it("errors on a Guest as self, naming its type", function()
    assert.has_error(function() Vcpu.read_state(g) end, "vcpu:read_state: expected a moonvisor.Vcpu, got moonvisor.Guest")
  end)

  it("errors on a Vmo as self, naming its type", function()
    assert.has_error(function() Vcpu.read_state(ram) end, "vcpu:read_state: expected a moonvisor.Vcpu, got moonvisor.Vmo")
    vmo_usable(ram)
  end)
end)

describe("vcpu:write_state", function()
  local g, ram, cpu
  before_each(function() g, ram, cpu = machine("hlt") end)
  after_each(function()
    cpu:close()
    g:close()
  end)

  for _, c in ipairs{ { "a string", "x", "string" }, { "a number", 1, "number" }, { "nil", nil, "nil" } } do
    it("errors on " .. c[1] .. " as the register table, naming vcpu:write_state", function()
      assert_err(function() cpu:write_state(c[2]) end, "vcpu:write_state: ", c[3])
      vcpu_usable(cpu)
    end)
  end

  for _, c in ipairs(bad_ints(false)) do
    it("errors on " .. c[1] .. " as a register value and changes nothing", function()
      cpu.rax = 0x55
      assert.has_error(function() cpu:write_state{ rax = c[2] } end, "vcpu:write_state: rax must be an integer, got " .. c[3])
      assert.equals(0x55, cpu.rax)
      vcpu_usable(cpu)
    end)
  end

  it("errors on an unknown register and changes nothing", function()
    cpu.rax = 0x55
    assert.has_error(function() cpu:write_state{ rax = 1, eax = 2 } end, "vcpu:write_state: unknown register eax")
    assert.equals(0x55, cpu.rax)
    vcpu_usable(cpu)
  end)

  it("errors on a register named by a number", function()
    assert_err(function() cpu:write_state{ 5 } end, "vcpu:write_state: unknown register")
    vcpu_usable(cpu)
  end)

  it("round-trips a value above 32 bits or refuses it, naming the register", function()
    local ok, e = pcall(cpu.write_state, cpu, { rax = 1 << 40 })
    if ok then
      assert.equals(1 << 40, cpu.rax)
    else
      assert.matches("^vcpu:write_state: .*rax", strip(e))
    end
    vcpu_usable(cpu)
  end)

  it("errors on a Guest as self, naming its type", function()
    assert.has_error(function() Vcpu.write_state(g, {}) end,
                     "vcpu:write_state: expected a moonvisor.Vcpu, got moonvisor.Guest")
  end)
end)

describe("vcpu:sregs", function()
  it("errors on a Guest as self, naming its type", function()
    local g = H.guest()
    assert.has_error(function() Vcpu.sregs(g) end, "vcpu:sregs: expected a moonvisor.Vcpu, got moonvisor.Guest")
    g:close()
  end)

  it("errors on a table as self", function()
    assert.has_error(function() Vcpu.sregs({}) end, "vcpu:sregs: expected a moonvisor.Vcpu, got table")
  end)
end)

describe("vcpu:write_sregs", function()
  local g, ram, cpu
  before_each(function() g, ram, cpu = machine("hlt") end)
  after_each(function()
    cpu:close()
    g:close()
  end)

  for _, c in ipairs{ { "a string", "x", "string" }, { "a number", 1, "number" }, { "nil", nil, "nil" } } do
    it("errors on " .. c[1] .. " as the table, naming vcpu:write_sregs", function()
      assert_err(function() cpu:write_sregs(c[2]) end, "vcpu:write_sregs: ", c[3])
      vcpu_usable(cpu)
    end)
  end

  for _, c in ipairs(bad_ints(false)) do
    it("errors on " .. c[1] .. " as cr0 and changes nothing", function()
      assert.has_error(function() cpu:write_sregs{ ds = { selector = 0x100, base = 0x1000 }, cr0 = c[2] } end,
                       "vcpu:write_sregs: cr0 must be an integer, got " .. c[3])
      assert.equals(0, cpu:sregs().ds.base)
      vcpu_usable(cpu)
    end)
  end

  it("errors on a segment that is not a table", function()
    assert.has_error(function() cpu:write_sregs{ cs = 5 } end, "vcpu:write_sregs: cs must be a table, got number")
    assert.has_error(function() cpu:write_sregs{ gdt = "x" } end, "vcpu:write_sregs: gdt must be a table, got string")
    vcpu_usable(cpu)
  end)

  it("errors on a bad segment field, naming the segment and the field", function()
    assert_err(function() cpu:write_sregs{ ds = { base = "x" } } end, "vcpu:write_sregs: ", "ds.base", "string")
    assert_err(function() cpu:write_sregs{ idt = { limit = 1.5 } } end, "vcpu:write_sregs: ", "idt.limit", "1.5")
    vcpu_usable(cpu)
  end)

  for _, c in ipairs{
    { "ds.selector", { ds = { selector = 0x10000 } }, 0x10000, 16 },
    { "ds.limit", { ds = { limit = 1 << 32 } }, 1 << 32, 32 },
    { "ds.present", { ds = { present = 256 } }, 256, 8 },
    { "gdt.limit", { gdt = { limit = 0x10000 } }, 0x10000, 16 },
  } do
    it("errors on a value too wide for " .. c[1] .. " instead of truncating it", function()
      local before = cpu:sregs()
      assert_err(function() cpu:write_sregs(c[2]) end, "vcpu:write_sregs: ", c[1], c[3])
      assert.same(before, cpu:sregs())
      vcpu_usable(cpu)
    end)
  end

  it("errors on an unknown field instead of ignoring it", function()
    assert_err(function() cpu:write_sregs{ cr9 = 1 } end, "vcpu:write_sregs: ", "cr9")
    vcpu_usable(cpu)
  end)

  it("errors on an unknown segment field instead of ignoring it", function()
    assert_err(function() cpu:write_sregs{ ds = { selectr = 0x100 } } end, "vcpu:write_sregs: ", "selectr")
    vcpu_usable(cpu)
  end)

  it("names the segment and the field: an unknown name, a key that is not a name", function()
    assert.has_error(function() cpu:write_sregs{ ds = { selectr = 0x100 } } end, "vcpu:write_sregs: unknown field ds.selectr")
    assert.has_error(function() cpu:write_sregs{ ds = { [1] = 0x100 } } end, "vcpu:write_sregs: unknown field ds.1")
    assert.has_error(function() cpu:write_sregs{ ss = { [true] = 0 } } end, "vcpu:write_sregs: unknown field ss.true")
    assert.has_error(function() cpu:write_sregs{ ds = { dpl = 4 } } end, "vcpu:write_sregs: ds.dpl = 0x4 does not fit in 2 bits")
    local long = ("selector"):rep(6)   -- longer than Lua's short strings, which are interned
    assert.has_error(function() cpu:write_sregs{ ds = { [long] = 0 } } end, "vcpu:write_sregs: unknown field ds." .. long)
    vcpu_usable(cpu)
  end)

  it("takes field names made at run time like the ones written in the source", function()
    local sel, base = table.concat{ "sel", "ector" }, ("ba"):rep(1) .. "se"
    cpu:write_sregs{ ds = { selector = 0x20, base = 0x200 } }
    cpu:write_sregs{ ds = { [sel] = 0x10, [base] = 0x100 } }
    local ds = cpu:sregs().ds
    assert.same({ 0x10, 0x100 }, { ds.selector, ds.base })
    vcpu_usable(cpu)
  end)

  it("errors on a Guest as self, naming its type", function()
    assert.has_error(function() Vcpu.write_sregs(g, {}) end,
                     "vcpu:write_sregs: expected a moonvisor.Vcpu, got moonvisor.Guest")
  end)
end)

describe("vcpu registers (cpu.rax, cpu.rip = v)", function()
  local g, ram, cpu
  before_each(function() g, ram, cpu = machine("hlt") end)
  after_each(function()
    cpu:close()
    g:close()
  end)

  for _, c in ipairs(bad_ints(true)) do
    it("errors on " .. c[1] .. " assigned to rip and changes nothing", function()
      assert.has_error(function() cpu.rip = c[2] end, "vcpu.register: rip must be an integer, got " .. c[3])
      assert.equals(0x1000, cpu.rip)
      vcpu_usable(cpu)
    end)
  end

  it("accepts a float that holds an integer", function()
    cpu.rip = 4098.0
    assert.equals(0x1002, cpu.rip)
  end)

  it("errors on assigning a field that is not a register", function()
    assert.has_error(function() cpu.eip = 0 end, "vcpu: cannot set field eip (not a register)")
    assert.has_error(function() cpu[1] = 0 end, "vcpu: cannot set field 1 (not a register)")
    vcpu_usable(cpu)
  end)

  it("reads nil for a field that is not a register", function()
    assert.is_nil(cpu.eip)
    assert.is_nil(cpu[1])
  end)

  for _, c in ipairs{ { "rip", MAXI }, { "rax", 1 << 40 }, { "rbx", -1 }, { "r8", 1 } } do
    it(("round-trips %s = %d or refuses it, naming the register"):format(c[1], c[2]), function()
      local ok, e = pcall(function() cpu[c[1]] = c[2] end)
      if ok then
        assert.equals(c[2], cpu[c[1]])
      else
        assert.matches("^vcpu%.[%w_]+: .*" .. c[1], strip(e))
      end
      cpu.rip = 0x1000
      vcpu_usable(cpu)
    end)
  end

  it("errors on a Guest as self of a read, naming its type", function()
    local index = getmetatable(cpu).__index
    local e = err_of(index, g, "rax")
    assert.matches("^vcpu%.[%w_]+: expected a moonvisor%.Vcpu, got moonvisor%.Guest$", e)
  end)

  it("errors on a Guest as self of a write, naming its type", function()
    local newindex = getmetatable(cpu).__newindex
    local e = err_of(newindex, g, "rax", 1)
    assert.matches("^vcpu%.[%w_]+: expected a moonvisor%.Vcpu, got moonvisor%.Guest$", e)
  end)
end)

describe("vcpu:close", function()
  it("can be called twice", function()
    local g, ram, cpu = machine("hlt")
    cpu:close()
    cpu:close()
    assert.equals("Vcpu(closed)", tostring(cpu))
    guest_usable(g)
    g:close()
  end)

  it("errors on a Guest, naming vcpu:close and the type", function()
    local g = H.guest()
    assert.has_error(function() Vcpu.close(g) end, "vcpu:close: expected a moonvisor.Vcpu, got moonvisor.Guest")
    guest_usable(g)
    g:close()
  end)

  it("errors on a string, naming vcpu:close", function()
    assert.has_error(function() Vcpu.close("cpu") end, "vcpu:close: expected a moonvisor.Vcpu, got string")
  end)
end)

describe("a closed vcpu", function()
  local g, ram, cpu
  before_each(function()
    g, ram, cpu = machine("hlt")
    cpu:close()
  end)
  after_each(function() g:close() end)

  local calls = { enter = {}, kick = {}, interrupt = { 32 }, read_state = {}, write_state = { {} },
                  sregs = {}, write_sregs = { {} } }
  for name, args in pairs(calls) do
    it("refuses " .. name, function()
      assert.has_error(function() cpu[name](cpu, table.unpack(args)) end, "vcpu:" .. name .. ": attempt to use a closed vcpu")
      guest_usable(g)
    end)
  end

  it("refuses register reads and writes", function()
    assert.matches("^vcpu%.[%w_]+: attempt to use a closed vcpu$", err_of(function() return cpu.rax end))
    assert.matches("^vcpu%.[%w_]+: attempt to use a closed vcpu$", err_of(function() cpu.rip = 0 end))
  end)

  it("leaves the guest able to make a new vcpu", function()
    local other = g:vcpu{ entry = 0x1000 }
    assert.equals("hlt", other:enter().type)
    other:close()
  end)
end)

describe("a vcpu of a closed guest", function()
  local g, ram, cpu
  before_each(function()
    g, ram, cpu = machine("hlt")
    g:close()
  end)

  local calls = { enter = {}, kick = {}, interrupt = { 32 }, read_state = {}, write_state = { { rax = 1 } },
                  sregs = {}, write_sregs = { { cr0 = 0 } } }
  for name, args in pairs(calls) do
    it("refuses " .. name, function()
      assert.has_error(function() cpu[name](cpu, table.unpack(args)) end,
                       "vcpu:" .. name .. ": attempt to use a vcpu of a closed guest")
      vmo_usable(ram)
    end)
  end

  it("refuses run, naming vcpu:run", function()
    assert.has_error(function() cpu:run() end, "vcpu:run: attempt to use a vcpu of a closed guest")
  end)

  it("refuses register reads", function()
    assert.matches("^vcpu%.[%w_]+: attempt to use a vcpu of a closed guest$", err_of(function() return cpu.rax end))
  end)

  it("refuses register writes", function()
    assert.matches("^vcpu%.[%w_]+: attempt to use a vcpu of a closed guest$", err_of(function() cpu.rip = 0 end))
  end)

  it("can still be closed, twice", function()
    cpu:close()
    cpu:close()
    assert.equals("Vcpu(closed)", tostring(cpu))
  end)

  it("says so in tostring", function()
    assert.equals("Vcpu(0, guest closed)", tostring(cpu))
    cpu:close()
  end)
end)
