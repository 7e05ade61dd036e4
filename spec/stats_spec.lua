-- stats_spec.lua - cpu:stats() and g:trace(path): where a guest's time goes.
local H = require "helpers"

describe("cpu:stats()", function()
  it("counts exits by type and calls by trap, and times handlers when asked", function()
    local g, cpu = H.real([[
      mov cx, 5
      l: out 0x80, al
      in al, 0x81
      loop l
      out 0x99, al
      hlt]])
    g:trap("io", 0x80, 1, function() end)
    g:trap("io", 0x81, 1, function() return 1 end)
    g:timing(true)
    assert.equals("io", cpu:run().type)      -- the unclaimed out 0x99
    assert.equals("hlt", cpu:run().type)
    local s = cpu:stats()
    assert.same({ io = 1, hlt = 1 }, s.exits)
    assert.same({ io = 10 }, s.handled)
    assert.equals(2, #s.traps)
    assert.same({ "io", 0x80, 1, 5 }, { s.traps[1].kind, s.traps[1].addr, s.traps[1].size, s.traps[1].calls })
    assert.equals(5, s.traps[2].calls)
    assert.is_true(s.handler_ns > 0 and s.traps[1].time_ns > 0)
  end)
end)

describe("guest:trace(path)", function()
  it("writes every exit as a Chrome trace event", function()
    local g, cpu = H.real("out 0x80, al\nout 0x80, al\nhlt")
    g:trap("io", 0x80, 1, function() end)
    local path = os.tmpname()
    g:trace(path)
    assert.equals("hlt", cpu:run().type)
    g:trace()   -- closes the file
    local text = io.open(path):read("a")
    os.remove(path)
    assert.matches('^{"displayTimeUnit":"ns","traceEvents":%[', text)
    assert.matches("%]}\n$", text)
    local names = {}
    for name in text:gmatch('"name":"([^"]+)"') do names[#names + 1] = name end
    assert.same({ "io 0x80 write", "io 0x80 write", "hlt" }, names)
    assert.equals(3, select(2, text:gsub('"ph":"X"', "")))
  end)

  it("is closed with its guest", function()
    local g, cpu = H.real("hlt")
    local path = os.tmpname()
    g:trace(path)
    cpu:run()
    g:close()
    assert.matches("%]}\n$", io.open(path):read("a"))
    os.remove(path)
  end)
end)
