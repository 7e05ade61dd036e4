-- moonvisor: the Lua face of the C module moonvisor.core.
-- It re-exports the core (mv.vmo, mv.guest, mv.caps, ...) and adds what is
-- easier to read and change in Lua: cpu:run(), the default backend.
-- What a script may never use is loaded when first used: the CPU modes
-- (moonvisor.modes, with the first VCPU given one), the host probe
-- (mv.host), the breakpoint emulation (with the first cpu:debug), gdb, the
-- executable's options (moonvisor.options).
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

-- {====================================================== the executable's options

-- Options the moonvisor executable sets from its command line.
mv.options = {}
local traced = 0

-- mv.print_stats(g[, out]) (the --stats report) and mv.configure(opts)
-- (the executable's options): moonvisor.options, loaded with the first.
function mv.print_stats(g, out) return require("moonvisor.options").print_stats(g, cpus_of[g] or {}, out) end
function mv.configure(opts) return require("moonvisor.options").configure(mv, opts) end

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

local typename = core.typename   -- "moonvisor.Vcpu" for our userdata, type(v) otherwise

-- Errors raised by enter name vcpu:run, the call the user made.
local function rename(ok, ...)
  if ok then return ... end
  local e = ...
  if type(e) == "string" then e = e:gsub("^vcpu:enter: ", "vcpu:run: ", 1) end
  error(e, 2)   -- run is tail-called away: level 2 is the caller of run, as for C errors
end

-- g:gdbserver{ host, port, cpu, wait, elf }: a gdb remote stub (moonvisor.gdb).
function Guest.gdbserver(g, opts) return require("moonvisor.gdb").gdbserver(g, opts) end

-- mv.host([backend]): what the backend and host really do (moonvisor.host).
function mv.host(backend) return require("moonvisor.host").probe(backend or mv.default_backend) end

-- cpu:run(): enters until the guest halts, shuts down, errors or leaves an
-- exit that no handler consumed.  Kicks end the run too, so Ctrl-C and
-- timeouts work.  (Vcpu.enter: the core's, or moonvisor.breakpoints' once
-- it is loaded, or moonvisor.options' --gdb hook until gdb attached.)
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
