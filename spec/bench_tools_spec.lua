-- bench_tools_spec.lua - the tools bench/counts.sh reads its figures with:
-- bench/callgrind_objects.awk splits a callgrind profile's instructions by
-- the object they ran in.  Checked on a hand-written profile (names given
-- in full once, then by id; call costs not counted twice) and on a real one,
-- whose objects must add up to callgrind's own total.

local files = require "moonvisor.files"
local sh = require("helpers").sh   -- output and exit code

local function objects(path)
  local out, code = sh("awk -f bench/callgrind_objects.awk " .. path)
  assert.equals(0, code, out)
  local t = {}
  for name, n in out:gmatch("([^\n]+) (%d+)\n") do t[name] = tonumber(n) end
  return t
end

describe("bench/callgrind_objects.awk", function()
  local tmp = os.tmpname()
  after_each(function() os.remove(tmp) end)

  it("sums each object's own instructions, names compressed, calls left out", function()
    files.write(tmp, table.concat({
      "# callgrind format", "version: 1", "positions: line", "events: Ir", "summary: 1111", "",
      "ob=(1) /usr/lib/liblua.so", "fl=(1) lvm.c", "fn=(1) luaV_execute",
      "10 100", "+2 20",
      "cob=(2) /work/build/moonvisor", "cfi=(2) lguest.c", "cfn=(2) trap_call",
      "calls=3 5", "12 9999",              -- inclusive cost of the call: not this object's
      "* 1",
      "ob=(2)", "fl=(2)", "fn=(2)",
      "5 400", "-1 90",
      "ob=(3) /usr/lib/libc.so", "fl=(3) ???", "fn=(3) memcpy", "0 500",
      "ob=(1)", "fl=(1)", "fn=(1)", "14 0",
      "",
    }, "\n"), "bench_tools_spec")
    local t = objects(tmp)
    assert.same({ ["/usr/lib/liblua.so"] = 121, ["/work/build/moonvisor"] = 490, ["/usr/lib/libc.so:???"] = 500 }, t)
  end)

  -- The executable links Lua in: its code without a source file is Lua's,
  -- kept apart as "path:???", also when it follows a function of moonvisor's
  -- own with inlined code from another file (fi=/fe=).
  it("keeps an object's code without a source file apart from the rest", function()
    files.write(tmp, table.concat({
      "# callgrind format", "version: 1", "positions: line", "events: Ir", "",
      "ob=(1) /work/build/moonvisor", "fl=(1) core/kvm/kvm.c", "fn=(1) kvm_vcpu_run",
      "10 7", "fi=(2) core/internal.h", "20 5", "fe=(1)", "11 3",
      "cob=(1)", "cfi=(3) ???", "cfn=(2) lua_callk", "calls=1 0", "12 1000",
      "fl=(3)", "fn=(2)", "0 40",
      "fl=(1)", "fn=(3) settle", "30 2",
      "",
    }, "\n"), "bench_tools_spec")
    assert.same({ ["/work/build/moonvisor"] = 17, ["/work/build/moonvisor:???"] = 40 }, objects(tmp))
  end)

  it("adds up to callgrind's total on a real profile", function()
    local _, found = sh("command -v valgrind")
    assert.equals(0, found, "valgrind is one of the Debian packages make deps installs")
    local out, code = sh(("valgrind --tool=callgrind --callgrind-out-file=%s lua5.4 -e %q"):format(
      tmp, "local t = {} for i = 1, 1000 do t[i] = tostring(i) end"))
    assert.equals(0, code, out)
    local total = assert(tonumber((out:match("Collected : *(%d+)"))), out)
    local sum, liblua = 0, 0
    for name, n in pairs(objects(tmp)) do
      sum = sum + n
      if name:find("liblua", 1, true) or name:find("lua5.4", 1, true) then liblua = liblua + n end
    end
    assert.equals(total, sum)
    assert.is_true(liblua > 0, "no instructions in Lua's library or interpreter")
  end)
end)
