-- panic_watch_spec.lua - moonvisor.panic_watch: a Linux panic noticed in the
-- console's bytes, whole lines only, bounded per line.
local watch = require "moonvisor.panic_watch"

local function feed(w, s) for i = 1, #s do w:byte(s:byte(i)) end end

describe("panic_watch", function()
  it("takes the panic line, and is due at the end line", function()
    local w = watch.new()
    feed(w, "[    1.0] VFS: Cannot open root device\r\n[    1.1] Kernel panic - not syncing: VFS: Unable to mount root fs")
    assert.is_nil(w.panic)                       -- not a whole line yet
    feed(w, "\r\n")
    assert.equals("Kernel panic - not syncing: VFS: Unable to mount root fs", w.panic)
    assert.is_false(w:due())
    feed(w, "Call Trace:\r\n---[ end Kernel panic - not syncing: VFS: Unable to mount root fs ]---\r\n")
    assert.is_true(w:due())
  end)

  it("is due PANIC_GRACE seconds after the panic line without an end line", function()
    local w = watch.new()
    feed(w, "Kernel panic - not syncing: Attempted to kill init!\n")
    w.since = w.since - watch.PANIC_GRACE
    assert.is_true(w:due())
  end)

  it("keeps at most MAX_LINE bytes of a line", function()
    local w = watch.new()
    feed(w, string.rep("x", 100000))
    assert.equals(watch.MAX_LINE, #w.buf)
    feed(w, "\n")
    assert.is_nil(w.panic)
  end)
end)

describe("panic_watch's tap and on_line", function()
  it("takes bytes through w.tap as through w:byte, and calls on_line after whole lines once panicked", function()
    local calls = {}
    local w = watch.new{ on_line = function(x) calls[#calls + 1] = x.ended or false end }
    for i = 1, #"boot\n" do w.tap(("boot\n"):byte(i)) end
    assert.same({}, calls)                        -- no panic yet: on_line is not called
    feed(w, "Kernel panic - not syncing: oops\nmore")
    assert.same({ false }, calls)                 -- the panic line itself
    feed(w, "\n---[ end Kernel panic - not syncing: oops ]---\n")
    assert.same({ false, false, true }, calls)
    assert.is_true(w:due())
  end)
end)
