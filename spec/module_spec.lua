-- module_spec.lua - require "moonvisor.core": the parts of the module a
-- script rarely uses (AFL++'s, the sockets, the terminal) are made when a
-- script first names one of their fields, through the core and through
-- require "moonvisor" alike.  Each case runs in a fresh moonvisor executable, so
-- that no other spec has made them already (MOONVISOR_EXE, default
-- build/moonvisor).
local H = require "helpers"
local exe = os.getenv("MOONVISOR_EXE") or "build/moonvisor"

-- The output of `moonvisor [options] -e code`, say(...) printing its
-- values separated by spaces.
local function run(code, options)
  local say = "local function say(...) local t = table.pack(...) for i = 1, t.n do t[i] = tostring(t[i]) end "
              .. "io.write(table.concat(t, \" \")) end "
  return (H.sh(("%s %s -e '%s'"):format(exe, options or "", say .. code)):gsub("\n$", ""))
end

describe("the core module's parts made on first use", function()
  it("are absent, metatables included, until a field of theirs is named", function()
    assert.equals("nil nil nil nil nil nil", run([[
      local core = require "moonvisor.core"
      local reg = debug.getregistry()
      say(rawget(core, "afl"), rawget(core, "tcp_listen"), rawget(core, "term_raw"),
            reg["moonvisor.AflShm"], reg["moonvisor.Listener"], reg["moonvisor.Term"])]]))
  end)

  it("are made whole by the first field named, once, and then are the module's own", function()
    assert.equals("198 function function table table nil", run([[
      local core = require "moonvisor.core"
      local afl = core.afl
      assert(core.afl == afl and rawget(core, "afl") == afl)
      say(afl.FORKSRV_FD, type(rawget(core, "tcp_connect") or core.tcp_listen), type(rawget(core, "tcp_connect")),
            type(debug.getregistry()["moonvisor.Listener"]), type(debug.getregistry()["moonvisor.AflShm"]),
            rawget(core, "read_fd"))]]))
  end)

  it("reach scripts through require \"moonvisor\" too, and other names stay nil", function()
    assert.equals("true function nil nil", run([[
      local mv = require "moonvisor"
      say(mv.isatty(0) ~= nil, type(mv.tcp_listen), mv.no_such_field, require("moonvisor.core")[42])]]))
  end)
end)

describe("mv.typename", function()
  local mv = require "moonvisor"
  it("names the bindings' userdata by their metatables, anything else by type()", function()
    local g = mv.guest{}
    assert.equals("moonvisor.Guest", mv.typename(g))
    assert.equals("moonvisor.Vmo", mv.typename(mv.vmo(4096)))
    assert.equals("table", mv.typename({}))
    assert.equals("nil", mv.typename(nil))
    assert.equals("number", mv.typename(1))
    g:close()
  end)

  it("wants a value", function()
    assert.has_error(function() mv.typename() end, "bad argument #1 to 'typename' (value expected)")
  end)
end)

describe("the executable's options", function()
  it("load moonvisor.options only when one is given", function()
    assert.equals("nil", run([[
      local mv = require "moonvisor"
      local g = mv.guest{}
      say(package.loaded["moonvisor.options"])]]))
    assert.equals("true", run('say(package.loaded["moonvisor.options"] ~= nil)', "--stats"))
  end)
end)
