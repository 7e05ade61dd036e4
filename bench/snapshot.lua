-- bench/snapshot.lua - reset rate of a 64 MiB guest: g:restore(s) after 1,
-- 16 and 256 dirty pages (the dirty-page restore), against a full-memory
-- restore (alternating between two snapshots forces a full copy each time).
-- Run from the repository root: build/moonvisor bench/snapshot.lua [seconds per case]
local mv = require "moonvisor"

local SIZE = 64 << 20
local per_case = tonumber(arg and arg[1]) or 0.5
local g = mv.guest{}
local ram = mv.vmo(SIZE)
g:map(0, ram)
g:write(0x1000, "\xf4")   -- hlt: one real-mode VCPU, so the snapshot has a CPU too
local cpu = g:vcpu{ entry = 0x1000 }
local s = g:snapshot()

-- resets/s of `step` for about per_case CPU seconds
local function rate(step)
  local n, t0 = 0, os.clock()
  repeat
    for _ = 1, 16 do step() end
    n = n + 16
  until os.clock() - t0 >= per_case
  return n / (os.clock() - t0)
end

print(("bench/snapshot: %d MiB guest, %s backend, %.1f s per case"):format(SIZE >> 20, g:backend(), per_case))
local results = {}
for _, pages in ipairs{ 1, 16, 256 } do
  local stride = (SIZE // 4096) // pages * 4096
  local copied
  local r = rate(function()
    for p = 0, pages - 1 do ram:u8(p * stride, p & 0xff) end   -- dirty `pages` pages
    copied = g:restore(s)
  end)
  results[pages] = r
  print(("  dirty-page restore, %3d dirty pages: %10.0f resets/s  (%d pages copied)"):format(pages, r, copied))
end
local s2 = g:snapshot()
local flip, copied = false, 0
local full = rate(function()
  flip = not flip
  copied = g:restore(flip and s or s2)
end)
print(("  full restore (64 MiB copy):          %10.0f resets/s  (%d pages copied)"):format(full, copied))
for _, pages in ipairs{ 1, 16, 256 } do
  print(("  ratio dirty(%d) / full: %.0fx"):format(pages, results[pages] / full))
end
cpu:close()
