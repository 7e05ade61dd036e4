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

-- Under AddressSanitizer freed memory waits in a quarantine (256 MiB unless
-- ASAN_OPTIONS says quarantine_size_mb=N) before it is reused, so RSS grows
-- until the quarantine is full, however much the specs before this one
-- filled it: RSS may grow by that much more there.  The heap in use, the
-- fds and the mappings are checked the same everywhere.
local function quarantine_kib()
  for line in io.lines("/proc/self/maps") do
    if line:find("libasan", 1, true) then
      local mb = (os.getenv("ASAN_OPTIONS") or ""):match("quarantine_size_mb=(%d+)")
      return (tonumber(mb) or 256) * 1024
    end
  end
  return 0
end

local function mappings()
  local n = 0
  for _ in io.lines("/proc/self/maps") do n = n + 1 end
  return n
end

-- Guest lifecycles to run: 10,000 unless MOONVISOR_RESOURCE_CYCLES says
-- otherwise (the nested test VM, where a VCPU takes ~30 ms to create, runs
-- 2,000: a leak of one fd or one page per cycle shows either way).
local CYCLES = tonumber(os.getenv("MOONVISOR_RESOURCE_CYCLES")) or 10000

describe("resource bounds", function()
  -- A leak shows in malloc's count of bytes in use (Lua's objects included),
  -- in the mappings or in the fds; RSS also moves with heap fragmentation,
  -- so it only has to stay bounded.
  it(("%d guest create/map/enter/close cycles leave fds, mappings and the heap flat, RSS bounded"):format(CYCLES), function()
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
    local fds, maps, heap, rss = H.fd_count(), mappings(), mv.heap().in_use, rss_kib()
    for _ = warm + 1, CYCLES do cycle() end
    collectgarbage(); collectgarbage()
    local grown, heap_grown = rss_kib() - rss, mv.heap().in_use - heap
    print(("\n  after %d cycles: RSS %d KiB, heap in use %d KiB; after %d: %+d KiB, %+d KiB"):format(
      warm, rss, heap // 1024, CYCLES, grown, heap_grown // 1024))
    assert.equals(fds, H.fd_count())
    -- a mapping leaked per cycle would add thousands; allocators (ASan's) map and unmap a few
    assert.is_true(mappings() <= maps + 16, ("mappings: %d before, %d after"):format(maps, mappings()))
    assert.is_true(heap_grown < 256 * 1024, ("the heap in use grew by %d bytes"):format(heap_grown))
    local slack = quarantine_kib()
    assert.is_true(grown < 64 * 1024 + slack, ("RSS grew by %d KiB (bound %d KiB)"):format(grown, 64 * 1024 + slack))
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
