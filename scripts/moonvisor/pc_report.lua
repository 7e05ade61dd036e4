-- pc_report.lua - what a moonvisor.pc machine did, for people and benches:
-- its exits by type and by device, its devices' counters, the accesses no
-- device claimed.  m:exit_stats() and m:report() (pc.lua) call these.
local M = {}

-- exit_stats(m) -> { exits = { type = n }, total = n, devices = { { name, exits }, ... } }:
-- the VCPUs' exits to userspace by type (those handlers took and those
-- that returned from enter: timeouts, kicks, unclaimed accesses), and the io/mem exits each
-- device's traps took (most first), "unclaimed" for the rest.  What KVM
-- handles in the kernel (the irqchip, the PIT) never exits and is not here.
function M.exit_stats(m)
  local by, stats = {}, {}
  for i, cpu in ipairs(m.all_cpus) do stats[i] = cpu:stats() end
  for _, t in ipairs(stats[1].traps) do          -- the guest's traps: their counts cover every VCPU
    for _, o in ipairs(m.trap_owners) do
      if o.kind == t.kind and o.addr == t.addr and o.size == t.size then
        by[o.name] = (by[o.name] or 0) + t.calls
        break
      end
    end
  end
  if m.unclaimed.total > 0 then by.unclaimed = m.unclaimed.total end
  local devices = {}
  for name, n in pairs(by) do devices[#devices + 1] = { name = name, exits = n } end
  table.sort(devices, function(a, b) if a.exits ~= b.exits then return a.exits > b.exits end return a.name < b.name end)
  local exits, total = {}, 0
  for _, s in ipairs(stats) do
    for _, t in ipairs{ s.exits, s.handled } do
      for ty, n in pairs(t) do exits[ty] = (exits[ty] or 0) + n total = total + n end
    end
  end
  return { exits = exits, total = total, devices = devices }
end

-- report(m) -> lines describing the devices and the unclaimed accesses.
function M.report(m)
  local lines = {}
  local names = {}
  for k in pairs(m.dev) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    local d = m.dev[k]
    if d.stats then
      local s = d:stats()
      local kv = {}
      for sk, sv in pairs(s) do
        if type(sv) ~= "table" then kv[#kv + 1] = ("%s=%s"):format(sk, tostring(sv)) end
      end
      table.sort(kv)
      lines[#lines + 1] = ("%-10s %s"):format(k, table.concat(kv, " "))
    end
  end
  if m.unclaimed.total > 0 then
    lines[#lines + 1] = ("unclaimed: %d accesses (%d reads, %d writes)"):format(m.unclaimed.total,
      m.unclaimed.reads, m.unclaimed.writes)
    for l in m.unclaimed:report():gmatch("[^\n]+") do lines[#lines + 1] = "  " .. l end
  else
    lines[#lines + 1] = "unclaimed: none"
  end
  return lines
end

return M
