-- options.lua - the moonvisor executable's options applied to the library
-- (mv.configure, which main.c calls with them): --trace FILE (mv.guest
-- traces each guest), --stats (each guest's VCPU statistics as it closes:
-- print_stats), --gdb HOST:PORT (the first enter waits for gdb),
-- --record/--replay LOG.  Loaded only when one is given.
local core = require "moonvisor.core"

local M = {}
local Vcpu, Guest, typename = core.Vcpu, core.Guest, core.typename

-- print_stats(g, cpus, out): what cpu:stats() says of each of g's VCPUs
-- (moonvisor's list of them), to out (default stderr).
function M.print_stats(g, cpus, out)
  out = out or io.stderr
  for _, cpu in ipairs(cpus) do
    local ok, s = pcall(cpu.stats, cpu)
    if ok then
      out:write(("%s: %s\n"):format(tostring(g), tostring(cpu)))
      local types = {}
      for t in pairs(s.exits) do types[#types + 1] = t end
      for t in pairs(s.handled) do if not s.exits[t] then types[#types + 1] = t end end
      table.sort(types)
      out:write("  exit type        returned    handled\n")
      for _, t in ipairs(types) do
        out:write(("  %-14s %10d %10d\n"):format(t, s.exits[t] or 0, s.handled[t] or 0))
      end
      out:write("  trap                          calls    handler ms\n")
      for _, t in ipairs(s.traps) do
        out:write(("  %-4s 0x%-8x +0x%-8x %10d %12.3f\n"):format(t.kind, t.addr, t.size, t.calls, t.time_ns / 1e6))
      end
      out:write(("  time in handlers: %.3f ms\n"):format(s.handler_ns / 1e6))
    end
  end
end

local function run_under_gdb(mv, cpu, cpus, call)
  local gdb = require "moonvisor.gdb"
  local host, port = gdb.parse_address(mv.options.gdb)
  mv.options.gdb = nil
  local r = gdb.gdbserver(cpu:guest(), { host = host, port = port, cpu = cpu, cpus = cpus, wait = true })
  if r.how == "kill" then error((call or "vcpu:enter") .. ": killed from gdb", 0) end
end

-- moonvisor --gdb host:port: the first cpu:enter() -- and so the first
-- cpu:run(), a moonvisor.pc machine's run or any enter loop -- or g:run of
-- several VCPUs (one gdb thread each) waits for gdb
-- before the guest's first instruction and runs under it until gdb detaches
-- (then the enter goes on) or kills (an error).  The wrapper exists only
-- while --gdb is pending: a Lua frame between the script and the core's
-- enter would put its own line into every error enter raises.
local function wait_for_gdb_on_enter(mv)
  local raw_enter, raw_run = Vcpu.enter, Guest.run
  local enter, run
  local function unhook()
    if Vcpu.enter == enter then Vcpu.enter = raw_enter end
    if Guest.run == run then Guest.run = raw_run end
  end
  function enter(cpu, opts)
    if mv.options.gdb then run_under_gdb(mv, cpu) end
    unhook()
    return raw_enter(cpu, opts)
  end
  -- g:run{ cpu0, cpu1, ... } or g:run(cpus, opts): gdb sees one thread per VCPU
  function run(g, a, ...)
    if mv.options.gdb and typename(g) == "moonvisor.Guest" and type(a) == "table" then
      local cpus = {}
      for i = 1, #a do
        if typename(a[i]) ~= "moonvisor.Vcpu" then cpus = {} break end
        cpus[i] = a[i]
      end
      if #cpus > 0 then run_under_gdb(mv, cpus[1], cpus, "guest:run") end
    end
    unhook()
    return raw_run(g, a, ...)
  end
  Vcpu.enter, Guest.run = enter, run
end


-- configure(mv, opts): the options go into mv.options (mv.guest and
-- g:vcpu look at trace and stats there) and take effect: gdb hooks the
-- first enter, record/replay arm moonvisor.replay, stats reports each
-- guest as it closes.
function M.configure(mv, opts)
  for k, v in pairs(opts) do mv.options[k] = v end
  if opts.gdb then wait_for_gdb_on_enter(mv) end
  if opts.record or opts.replay then require("moonvisor.replay").arm(mv.options) end
  if mv.options.stats then debug.getregistry()["moonvisor.on_close"] = mv.print_stats end
end

return M
