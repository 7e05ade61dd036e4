-- runner_spec.lua - the moonvisor executable: scripts with arguments, -e,
-- errors with tracebacks and exit status, the basic prompt on a pipe, and
-- the flagship example.
local H = require "helpers"

local exe = os.getenv("MOONVISOR_EXE") or "build/moonvisor"

local function run(args, stdin)
  local tmp = os.tmpname()
  local cmd = ("MOONVISOR_BACKEND=%s %s %s 2>&1 >%s"):format(H.backend, exe, args, tmp)
  local input = os.tmpname()
  local i = io.open(input, "w")
  i:write(stdin or "")
  i:close()
  cmd = cmd .. " <" .. input
  local p = io.popen(cmd)
  local err = p:read("a")
  local ok, _, code = p:close()
  local f = io.open(tmp)
  local out = f:read("a")
  f:close()
  os.remove(tmp)
  os.remove(input)
  return out, err, ok and 0 or code
end

describe("the moonvisor executable", function()
  it("runs a script with arg set as lua does", function()
    local tmp = os.tmpname()
    local f = io.open(tmp, "w")
    f:write("print(arg[0] == ..., select('#', ...), arg[1], arg[2], arg[-1] ~= nil)")
    f:close()
    local out, err, code = run(("%s one two"):format(tmp))
    os.remove(tmp)
    assert.equals(0, code, err)
    assert.equals("false\t2\tone\ttwo\ttrue\n", out)
  end)

  it("has moonvisor preloaded for -e chunks", function()
    local out, err, code = run([[-e 'local mv = require "moonvisor"; print(mv.version, #mv.vmo(1))']])
    assert.equals(0, code, err)
    assert.equals("0.1.0\t4096\n", out)
  end)

  it("prints the error with a traceback and exits non-zero", function()
    local out, err, code = run([[-e 'local mv = require "moonvisor"; mv.vmo(0)']])
    assert.equals(1, code)
    assert.matches("mv.vmo: size must be positive, got 0", err)
    assert.matches("stack traceback:", err)
  end)

  it("reads statements from a pipe and prints expression values", function()
    local out, err, code = run("", "x = 6 * 7\nx\nmv = require 'moonvisor'\n#mv.vmo(10)\nerror('oops')\nx + 1\n")
    assert.equals(0, code)
    assert.equals("42\n4096\n43\n", out)
    assert.matches("oops", err)
  end)

  it("refuses unknown options", function()
    local _, err, code = run("--frobnicate")
    assert.equals(1, code)
    assert.matches("unrecognized option '%-%-frobnicate'", err)
  end)

  it("runs examples/hello.lua: greeting, the handler's answer, a hlt exit", function()
    local out, err, code = run("examples/hello.lua")
    assert.equals(0, code, err)
    assert.equals("Hello from a real-mode guest!\n" ..
                  ("guest sent back 42; exit: hlt at rip=0x1018 (backend %s)\n"):format(H.backend), out)
  end)
end)

describe("moonvisor --trace and --stats", function()
  it("write a Chrome trace per guest and print exit statistics at close", function()
    local trace = os.tmpname() .. ".json"
    local out, err, code = run(("--stats --trace %s examples/hello.lua"):format(trace))
    assert.equals(0, code, err)
    assert.matches("Hello from a real%-mode guest!", out)
    assert.matches("hlt%s+1%s+0", err)
    assert.matches("io%s+0x3f8%s+%+0x1%s+30", err)
    local text = io.open(trace):read("a")
    os.remove(trace)
    assert.matches('"name":"io 0x3f9 read"', text)
    assert.matches('"name":"hlt","cat":"exit"', text)
    assert.matches("%]}\n$", text)
  end)
end)

-- The executable loads the library precompiled (build/lua-bc, made by make)
-- when the bytecode is not older than the source it would otherwise load
-- and carries that source's name; otherwise the source.  A tree of its own:
-- a copy of the executable, one module and bytecode made here, with a
-- marker only the bytecode sets.
describe("the moonvisor executable's precompiled library", function()
  local exe_path = os.getenv("MOONVISOR_EXE") or "build/moonvisor"
  local function sh(cmd) assert(os.execute(cmd), cmd) end
  local function tree()
    local dir = os.tmpname()
    os.remove(dir)
    sh(("mkdir -p %s/build/lua-bc/moonvisor %s/scripts/moonvisor && cp %s %s/build/moonvisor"):format(dir, dir, exe_path, dir))
    local src = dir .. "/scripts/moonvisor/probe_module.lua"
    local f = io.open(src, "w")
    f:write("return { from = PRECOMPILED and 'bytecode' or 'source', where = debug.getinfo(1, 'S').source }\n")
    f:close()
    return dir, src
  end
  -- bytecode of the module with the marker, under the chunk name `name`
  local function compile(dir, name)
    local fn = assert(load("PRECOMPILED = true\nreturn { from = 'bytecode', where = debug.getinfo(1, 'S').source }", "@" .. name))
    local o = io.open(dir .. "/build/lua-bc/moonvisor/probe_module.luac", "wb")
    o:write(string.dump(fn))
    o:close()
  end
  local function which(dir)
    local p = io.popen(("cd / && env -u MOONVISOR_SCRIPTS -u LUA_PATH %s/build/moonvisor -e 'local m = require \"moonvisor.probe_module\"; print(m.from, m.where)' 2>&1"):format(dir))
    local out = p:read("a")
    p:close()
    return out
  end

  it("loads the bytecode where it is newer, the source where that is", function()
    local dir, src = tree()
    local name = dir .. "/build/../scripts/moonvisor/probe_module.lua"
    sh("sleep 0.01")
    compile(dir, name)
    assert.equals(("bytecode\t@%s\n"):format(name), which(dir))
    sh(("sleep 0.01 && touch %s"):format(src))    -- the source edited after the build: it wins
    assert.equals(("source\t@%s\n"):format(name), which(dir))
    sh(("rm -rf %s"):format(dir))
  end)

  it("loads the source when the bytecode names another file", function()
    local dir = tree()
    sh("sleep 0.01")
    compile(dir, "/elsewhere/probe_module.lua")
    assert.matches("^source\t@", which(dir))
    sh(("rm -rf %s"):format(dir))
  end)

  it("loads the source when the bytecode is cut short or empty", function()
    local dir = tree()
    local name = dir .. "/build/../scripts/moonvisor/probe_module.lua"
    local bc = dir .. "/build/lua-bc/moonvisor/probe_module.luac"
    sh("sleep 0.01")
    compile(dir, name)
    sh(("truncate -s 40 %s"):format(bc))
    assert.equals(("source\t@%s\n"):format(name), which(dir))
    sh(("truncate -s 0 %s"):format(bc))
    assert.equals(("source\t@%s\n"):format(name), which(dir))
    sh(("rm -rf %s"):format(dir))
  end)

  -- The searcher comes first, but answers as Lua's own would: package.preload
  -- first, then the first file package.path names.
  local function run(dir, code)
    local p = io.popen(("cd / && env -u MOONVISOR_SCRIPTS -u LUA_PATH %s/build/moonvisor -e '%s' 2>&1"):format(dir, code))
    local out = p:read("a")
    p:close()
    return out
  end

  it("leaves a module package.preload has to it", function()
    local dir = tree()
    compile(dir, dir .. "/build/../scripts/moonvisor/probe_module.lua")
    assert.equals("preload\n", run(dir, [[
      package.preload["moonvisor.probe_module"] = function() return { from = "preload" } end
      print(require("moonvisor.probe_module").from)]]))
    sh(("rm -rf %s"):format(dir))
  end)

  it("loads the file a directory put before the library on package.path holds, and the library after it", function()
    local dir = tree()
    compile(dir, dir .. "/build/../scripts/moonvisor/probe_module.lua")
    sh(("mkdir -p %s/mine/moonvisor && echo 'return { from = \"mine\" }' > %s/mine/moonvisor/probe_module.lua"):format(dir, dir))
    assert.equals("mine\nbytecode\n", run(dir, ([[
      local saved = package.path
      package.path = "%s/mine/?.lua;" .. package.path
      print(require("moonvisor.probe_module").from)
      package.loaded["moonvisor.probe_module"], package.path = nil, saved
      print(require("moonvisor.probe_module").from)]]):format(dir)))
    sh(("rm -rf %s"):format(dir))
  end)
end)

-- bindings/dump.lua, which makes build/lua-bc: the bytecode behaves as the
-- source, keeps its line numbers and _ENV's name, and drops the names of
-- locals and of the other upvalues.
describe("bindings/dump.lua", function()
  local source = table.concat({
    "local M = {}",
    "local helper = function(t) return t.x end",
    "function M.call(v)",
    "  local thing = v",
    "  return thing.y",
    "end",
    "function M.via(v) return helper(v) end",
    "function M.global() return undefined_global.z end",
    "function M.upvalue() return helper.z end",
    "return M",
  }, "\n")
  local function dumped()
    local src, out = os.tmpname(), os.tmpname()
    local f = io.open(src, "w")
    f:write(source)
    f:close()
    assert(os.execute(("lua5.4 bindings/dump.lua %s /lib/probe.lua %s"):format(src, out)))
    f = io.open(out, "rb")
    local bc = f:read("a")
    f:close()
    os.remove(src)
    os.remove(out)
    return bc
  end

  it("writes bytecode that runs as its source, under the name it is given", function()
    local bc = dumped()
    assert.equals("\27Lua", bc:sub(1, 4))
    local m = assert(load(bc, "=ignored", "b"))()
    assert.equals(2, m.call({ y = 2 }))
    assert.equals(1, m.via({ x = 1 }))
    assert.equals("@/lib/probe.lua", debug.getinfo(m.call, "S").source)
    assert.equals(3, debug.getinfo(m.call, "S").linedefined)
  end)

  it("keeps line numbers and _ENV's name, and drops local and other upvalue names", function()
    local m = assert(load(dumped(), "=ignored", "b"))()
    local plain = assert(load(source, "@/lib/probe.lua"))()
    local _, err = pcall(plain.call, nil)
    assert.equals("/lib/probe.lua:5: attempt to index a nil value (local 'thing')", err)
    _, err = pcall(m.call, nil)
    assert.equals("/lib/probe.lua:5: attempt to index a nil value", err)
    _, err = pcall(m.via, nil)
    assert.equals("/lib/probe.lua:2: attempt to index a nil value", err)
    _, err = pcall(m.global)
    assert.equals("/lib/probe.lua:8: attempt to index a nil value (global 'undefined_global')", err)
    assert.is_nil(debug.getlocal(m.call, 1))          -- parameter names are local names too
    assert.equals("v", debug.getlocal(plain.call, 1))
    _, err = pcall(plain.upvalue)
    assert.equals("/lib/probe.lua:9: attempt to index a function value (upvalue 'helper')", err)
    _, err = pcall(m.upvalue)
    assert.equals("/lib/probe.lua:9: attempt to index a function value (upvalue '?')", err)
    assert.equals("helper", debug.getupvalue(plain.via, 1))
    assert.equals("(no name)", debug.getupvalue(m.via, 1))
    assert.equals("_ENV", debug.getupvalue(m.global, 1))
  end)
end)
