-- install_spec.lua - `make install PREFIX=<tmpdir>` gives a tree that works on
-- its own: the installed executable runs the installed example and finds the
-- installed Lua library with no environment variables, the man page is
-- there, and plain lua5.4 can require the module from the prefix.
local backend = os.getenv("MOONVISOR_BACKEND") or "kvm"

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local sh = require("helpers").sh   -- output and exit code

-- What the install must work without: the specs' own search paths, make's
-- settings of an enclosing make (test-asan builds elsewhere), MOONVISOR_SCRIPTS.
local CLEAN_ENV = "env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 -u MOONVISOR_SCRIPTS"
  .. " -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES"

describe("make install", function()
  local prefix

  setup(function()
    prefix = os.tmpname()
    os.remove(prefix)
    assert(os.execute("mkdir -p " .. q(prefix)))
    local out, code = sh(("%s make -s install PREFIX=%s"):format(CLEAN_ENV, q(prefix)))
    assert(code == 0, "make install failed:\n" .. out)
  end)

  teardown(function()
    if prefix then os.execute("rm -rf " .. q(prefix)) end
  end)

  it("installs an executable that runs the installed example", function()
    -- From / so that nothing of the source tree is on any relative path.
    local out, code = sh(("cd / && %s MOONVISOR_BACKEND=%s %s %s"):format(CLEAN_ENV, backend,
      q(prefix .. "/bin/moonvisor"), q(prefix .. "/share/moonvisor/examples/hello.lua")))
    assert.equals(0, code, out)
    assert.matches("Hello from a real%-mode guest!\n", out)
    assert.matches("guest sent back 42; exit: hlt at rip=0x1018 %(backend " .. backend .. "%)\n", out)
  end)

  it("lets the installed executable find the installed Lua library", function()
    local out, code = sh(("cd / && %s %s -e %s"):format(CLEAN_ENV, q(prefix .. "/bin/moonvisor"),
      q('print(package.searchpath("moonvisor", package.path))')))
    assert.equals(0, code, out)
    assert.equals(prefix .. "/bin/../share/lua/5.4/moonvisor/init.lua\n", out)
  end)

  it("installs the man page moonvisor(1)", function()
    local page = prefix .. "/share/man/man1/moonvisor.1"
    local f = assert(io.open(page))
    local text = f:read("a")
    f:close()
    assert.matches("^%.TH MOONVISOR 1", text)
    for _, section in ipairs{ "NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "ENVIRONMENT",
                              "FILES", "EXIT STATUS", "EXAMPLES", "SEE ALSO" } do
      assert.matches("\n%.SH " .. section:gsub("%s", "%%s") .. "\n", text)
    end
    if os.execute("command -v man >/dev/null 2>&1") then
      local out, code = sh(("MANWIDTH=80 man -l %s | col -b"):format(q(page)))
      assert.equals(0, code, out)
      assert.matches("moonvisor %- a scriptable hypervisor runtime", out)
      assert.matches("MOONVISOR_BACKEND", out)
    end
  end)

  it("lets plain lua5.4 require the module from the prefix", function()
    local code_ = ([[package.path = %q .. package.path
      package.cpath = %q .. package.cpath
      local mv = require "moonvisor"
      print(mv.version, package.searchpath("moonvisor.core", package.cpath))]]):format(
      prefix .. "/share/lua/5.4/?.lua;" .. prefix .. "/share/lua/5.4/?/init.lua;",
      prefix .. "/lib/lua/5.4/?.so;")
    local out, code = sh(("cd / && %s lua5.4 -e %s"):format(CLEAN_ENV, q(code_)))
    assert.equals(0, code, out)
    assert.equals("0.1.0\t" .. prefix .. "/lib/lua/5.4/moonvisor/core.so\n", out)
  end)
end)
