-- moonvisor: the Lua face of the C module moonvisor.core.
-- It re-exports the core (mv.vmo, mv.guest, mv.caps, ...) and adds what is
-- easier to read and change in Lua: cpu:run(), the default backend.
-- What a script may never use is loaded when first used: the host probe
-- (mv.host), the breakpoint emulation (with the first cpu:debug), gdb.
local core = require "moonvisor.core"

local mv = {}
for k, v in pairs(core) do mv[k] = v end

local Vcpu = core.Vcpu
local Guest = core.Guest

-- mv.x86, mv.user and mv.stubs (moonvisor.x86, moonvisor.user and
-- moonvisor.stubs) come with their first use, as they do for
-- g:vcpu{ mode = ... } (moonvisor.modes).
-- The core's own parts made on first use (mv.afl, mv.tcp_listen, ...: the
-- copy above has not seen them) come from the core then.
local lazy = { x86 = "moonvisor.x86", user = "moonvisor.user", stubs = "moonvisor.stubs" }
setmetatable(mv, { __index = function(t, k)
  local name = lazy[k]
  if name == nil then
    local v = core[k]
    if v ~= nil then rawset(t, k, v) end
    return v
  end
  local m = require(name)
  rawset(t, k, m)
  return m
end })

-- moonvisor.breakpoints wraps cpu:enter and cpu:debug where the host needs
-- it; only cpu:debug can ask for what it emulates, so it comes with the
-- first cpu:debug (and replaces this function).  core.raw keeps the core's
-- own enter and debug for moonvisor.host's probes.
if not package.loaded["moonvisor.breakpoints"] then
  core.raw = core.raw or { enter = Vcpu.enter, debug = Vcpu.debug }
  function Vcpu.debug(cpu, opts)
    require "moonvisor.breakpoints"
    return Vcpu.debug(cpu, opts)
  end
end

-- g:vcpu{ entry, mode = "real" | "protected" | "long", stack, tables }: the
-- core makes a real-mode VCPU, moonvisor.modes (loaded with the first VCPU
-- given a mode) puts it in the mode.
local new_vcpu = Guest.vcpu
local modes   -- moonvisor.modes, with the first VCPU given a mode
local cpus_of = setmetatable({}, { __mode = "k" })   -- guest -> its VCPUs, for --stats

function Guest.vcpu(g, opts)
  local cpu
  if type(opts) ~= "table" or opts.mode == nil or opts.mode == "real" then
    cpu = new_vcpu(g, opts)
  else
    cpu = new_vcpu(g, { entry = 0 })
    modes = modes or require "moonvisor.modes"
    modes.setup(cpu, opts.mode, opts)
  end
  if mv.options.stats then
    cpus_of[g] = cpus_of[g] or setmetatable({}, { __mode = "v" })
    table.insert(cpus_of[g], cpu)
  end
  return cpu
end

-- {====================================================== --trace and --stats

-- Options the moonvisor executable sets from its command line.
mv.options = {}
local traced = 0

-- Prints what cpu:stats() says of each VCPU of g, to stderr.
function mv.print_stats(g, out)
  out = out or io.stderr
  for _, cpu in ipairs(cpus_of[g] or {}) do
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

local wait_for_gdb_on_enter   -- below, with the --gdb hook
local typename                -- below

function mv.configure(opts)
  for k, v in pairs(opts) do mv.options[k] = v end
  if opts.gdb then wait_for_gdb_on_enter() end
  if opts.record or opts.replay then require("moonvisor.replay").arm(mv.options) end
  if mv.options.stats then debug.getregistry()["moonvisor.on_close"] = mv.print_stats end
end

-- }======================================================

-- The backend a guest gets when mv.guest{} names none: "kvm", unless the
-- environment says MOONVISOR_BACKEND=soft.
mv.default_backend = os.getenv("MOONVISOR_BACKEND") or "kvm"

function mv.guest(opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("mv.guest: options must be a table, got " .. type(opts), 2)
  end
  if opts.backend == nil then
    local copy = {}
    for k, v in pairs(opts) do copy[k] = v end
    copy.backend = mv.default_backend
    opts = copy
  end
  local g = core.guest(opts)
  if mv.options.trace then   -- one file per guest: out.json, out.2.json, ...
    traced = traced + 1
    g:trace(traced == 1 and mv.options.trace or mv.options.trace:gsub("(%.?[^./]*)$", "." .. traced .. "%1", 1))
  end
  if mv.options.stats then g:timing(true) end
  return g
end

-- moonvisor --gdb host:port: the first cpu:enter() -- and so the first
-- cpu:run(), a moonvisor.pc machine's run or any enter loop -- or g:run of
-- several VCPUs (one gdb thread each) waits for gdb
-- before the guest's first instruction and runs under it until gdb detaches
-- (then the enter goes on) or kills (an error).  The wrapper exists only
-- while --gdb is pending: a Lua frame between the script and the core's
-- enter would put its own line into every error enter raises.
local run_under_gdb
function wait_for_gdb_on_enter()
  local raw_enter, raw_run = Vcpu.enter, Guest.run
  local enter, run
  local function unhook()
    if Vcpu.enter == enter then Vcpu.enter = raw_enter end
    if Guest.run == run then Guest.run = raw_run end
  end
  function enter(cpu, opts)
    if mv.options.gdb then run_under_gdb(cpu) end
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
      if #cpus > 0 then run_under_gdb(cpus[1], cpus, "guest:run") end
    end
    unhook()
    return raw_run(g, a, ...)
  end
  Vcpu.enter, Guest.run = enter, run
end

-- Enters until the guest halts, shuts down, errors or leaves an exit that no
-- handler consumed.  Kicks end the run too, so Ctrl-C and timeouts work.
-- (Vcpu.enter: the core's, or moonvisor.breakpoints' once it is loaded.)

-- "moonvisor.Vcpu" for our userdata, the plain type otherwise (as the C side's lmv_typename).
function typename(v)
  local mt = getmetatable(v)
  local name = type(mt) == "table" and rawget(mt, "__name")
  return type(name) == "string" and name or type(v)
end

-- Errors raised by enter name vcpu:run, the call the user made.
local function rename(ok, ...)
  if ok then return ... end
  local e = ...
  if type(e) == "string" then e = e:gsub("^vcpu:enter: ", "vcpu:run: ", 1) end
  error(e, 2)   -- run is tail-called away: level 2 is the caller of run, as for C errors
end

-- g:gdbserver{ host, port, cpu, wait, elf }: a gdb remote stub (moonvisor.gdb).
function Guest.gdbserver(g, opts) return require("moonvisor.gdb").gdbserver(g, opts) end

function run_under_gdb(cpu, cpus, call)
  local gdb = require "moonvisor.gdb"
  local host, port = gdb.parse_address(mv.options.gdb)
  mv.options.gdb = nil
  local r = gdb.gdbserver(cpu:guest(), { host = host, port = port, cpu = cpu, cpus = cpus, wait = true })
  if r.how == "kill" then error((call or "vcpu:enter") .. ": killed from gdb", 0) end
end

-- mv.host([backend]): what the backend and host really do (moonvisor.host).
function mv.host(backend) return require("moonvisor.host").probe(backend or mv.default_backend) end

-- cpu:run{ timeout_ms = N } ends a guest that spins with a "timeout" exit.
-- For mode = "user" it also reports the sandbox's exceptions and syscalls,
-- for mode = "long" the exceptions its stubs report.
function Vcpu:run(opts)
  if typename(self) ~= "moonvisor.Vcpu" then
    error("vcpu:run: expected a moonvisor.Vcpu, got " .. typename(self), 2)
  end
  local enter = Vcpu.enter
  local user, stubs = package.loaded["moonvisor.user"], package.loaded["moonvisor.stubs"]
  if user and user.cpus[self] then return user.translate(self, rename(pcall(enter, self, opts))) end
  if stubs and stubs.cpus[self] then
    local e = rename(pcall(enter, self, opts))
    return stubs.take(self, e) or e
  end
  return rename(pcall(enter, self, opts))
end

return mv
