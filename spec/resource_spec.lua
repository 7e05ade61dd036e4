-- resource_spec.lua - resource bounds: thousands of guest lifecycles leave
-- the fd count and RSS flat; many traps still dispatch.
local mv = require "moonvisor"
local H = require "helpers"

local function rss_kib()
  for line in io.lines("/proc/self/status") do
    local v = line:match("^VmRSS:%s+(%d+)")
    if v then return tonumber(v) end
  end
end

-- Guest lifecycles to run: 10,000 unless MOONVISOR_RESOURCE_CYCLES says
-- otherwise (the nested test VM, where a VCPU takes ~30 ms to create, runs
-- 2,000: a leak of one fd or one page per cycle shows either way).
local CYCLES = tonumber(os.getenv("MOONVISOR_RESOURCE_CYCLES")) or 10000

describe("resource bounds", function()
  it(("%d guest create/map/enter/close cycles leave fds and RSS flat"):format(CYCLES), function()
    local code = H.asm("out 0x80, al\nhlt")
    local function cycle()
      local g = H.guest()
      local ram = mv.vmo(0x10000)
      g:map(0, ram)
      g:write(0x1000, code)
      g:trap("io", 0x80, 1, function() end)
      local cpu = g:vcpu{ entry = 0x1000 }
      assert.equals("hlt", cpu:run().type)
      g:close()
      ram:close()
    end
    local warm = CYCLES // 10
    for _ = 1, warm do cycle() end
    collectgarbage(); collectgarbage()
    local fds, rss = H.fd_count(), rss_kib()
    for _ = warm + 1, CYCLES do cycle() end
    collectgarbage(); collectgarbage()
    local grown = rss_kib() - rss
    print(("\n  RSS after %d cycles %d KiB, after %d %d KiB (%+d KiB)"):format(warm, rss, CYCLES, rss + grown, grown))
    assert.equals(fds, H.fd_count())
    assert.is_true(grown < 16 * 1024, ("RSS grew by %d KiB"):format(grown))
  end)

  it("10,000 port traps each reach their own handler", function()
    local g, cpu = H.real([[
      xor dx, dx
      l: out dx, al
      add dx, 7
      cmp dx, 7 * 1000
      jb l
      hlt]])
    local hits = {}
    for port = 0, 9999 do
      g:trap("io", port, 1, function(e) hits[#hits + 1] = e.port == port end)
    end
    assert.matches("10000 traps", tostring(g))
    assert.equals("hlt", cpu:run{ timeout_ms = 60000 }.type)
    assert.equals(1000, #hits)
    for _, ok in ipairs(hits) do assert.is_true(ok) end
  end)
end)
