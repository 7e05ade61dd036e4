-- makefile_spec.lua - on a fresh machine `make run` / `make test` must work
-- the first time: nothing the deps target installs may be asked for flags
-- before deps has run.  pkg-config and the compiler are replaced by stubs, on
-- PATH, that append their name to a log; then
--   * parsing the Makefile (`make -n deps`) calls none of them;
--   * every target that depends on deps (found in the Makefile) builds only in
--     a sub-make: with MAKE=true its own make calls none of them;
--   * and, as a control that the stubs are seen at all, the sub-make of
--     `make -n -B run` does call pkg-config, after deps's recipe.
-- Nothing here is installed or built: make -n only prints those recipes.
-- Also spec/tally, the one reader of a pass's "spec: N passed, M failed" line.

local files = require "moonvisor.files"
local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local sh = require("helpers").sh   -- output and exit code

local function slurp(path) return files.read(path) or "" end

-- The settings of an enclosing make (test-asan's BUILD=...) and a CC of the
-- caller's must not reach the make under test.
local CLEAN_ENV = "env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES -u CC"

-- Targets whose prerequisites name deps (or deps-vm).
local function deps_targets()
  local text = slurp("Makefile")
  local targets = {}
  for target, prereqs in ("\n" .. text):gmatch("\n([%w][%w%-]*):([^\n=]*)") do
    for word in prereqs:gmatch("%S+") do
      if word == "deps" or word == "deps-vm" then
        targets[#targets + 1] = target
        break
      end
    end
  end
  return targets
end

describe("the Makefile before deps has run", function()
  local dir, log

  -- Runs make with the stubs first on PATH; returns make's output and exit
  -- code and what the stubs logged (make's own output is appended to the
  -- same log when `ordered`, to see what came first).
  local function make(args, ordered)
    os.remove(log)
    local redirect = ordered and (" >>%s"):format(q(log)) or ""
    local out, code = sh(("%s PATH=%s:\"$PATH\" STUB_LOG=%s make %s%s"):format(
      CLEAN_ENV, q(dir), q(log), args, redirect))
    return out, code, slurp(log)
  end

  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. q(dir)))
    log = dir .. "/calls.log"
    for _, tool in ipairs{ "pkg-config", "cc", "gcc" } do
      local path = dir .. "/" .. tool
      local f = assert(io.open(path, "w"))
      f:write("#!/bin/sh\necho \"STUB CALLED: ", tool, " $*\" >>\"$STUB_LOG\"\nexit 1\n")
      f:close()
      assert(os.execute("chmod +x " .. q(path)))
    end
  end)

  teardown(function()
    if dir then os.execute("rm -rf " .. q(dir)) end
  end)

  it("reads no package's flags while parsing", function()
    local out, code, calls = make("-n deps")
    assert.equals(0, code, out)
    assert.equals("", calls)
  end)

  it("builds only in a sub-make for every target that installs packages first", function()
    local targets = deps_targets()
    assert.is_true(#targets >= 3, "found no targets depending on deps")
    for _, target in ipairs(targets) do
      local out, code, calls = make("-n MAKE=true " .. target)
      assert.equals(0, code, target .. ":\n" .. out)
      assert.equals("", calls, ("`make %s` asked for flags itself:\n%s"):format(target, calls))
    end
  end)

  it("lets the stubs see the sub-make's pkg-config, after deps (control)", function()
    local out, code, trace = make("-n -B run", true)
    assert.equals(0, code, out .. trace)
    local deps_at = trace:find("dpkg-query", 1, true)
    local stub_at = trace:find("STUB CALLED: pkg-config", 1, true)
    assert.is_truthy(deps_at, "deps's recipe is not in make -n's output:\n" .. trace)
    assert.is_truthy(stub_at, "the stub pkg-config was never called:\n" .. trace)
    assert.is_true(deps_at < stub_at, "pkg-config was called before deps's recipe:\n" .. trace)
  end)
end)

describe("spec/tally, which adds passes up for make test and .ci/run", function()
  local H = require "helpers"
  local function tally(text)
    local path = H.tmpfile(text)
    local out, code = sh("spec/tally " .. path)
    os.remove(path)
    assert.equals(0, code)
    return out
  end

  it("gives the counts of a log's last summary line, carriage returns ignored", function()
    assert.equals("10 0\n", tally("x\r\nspec: 3 passed, 1 failed\r\nmore\nspec: 10 passed, 0 failed (then this)\r\n"))
    assert.equals("0 7\n", tally("spec: 0 passed, 7 failed"))
  end)

  it("gives nothing for a log without one, or no log", function()
    assert.equals("", tally("1 success / 0 failures\nspec: passed, failed\n  spec: 1 passed, 0 failed\n"))
    local out, code = sh("spec/tally /nonexistent/log")
    assert.same({ "", 0 }, { out, code })
  end)
end)
