-- moonvisor: the Lua face of the C module moonvisor.core.
-- It re-exports the core (mv.vmo, mv.guest, mv.caps, ...) and adds what is
-- easier to read and change in Lua: cpu:run(), the default backend.
local core = require "moonvisor.core"

local mv = {}
for k, v in pairs(core) do mv[k] = v end

local Vcpu = core.Vcpu
local Guest = core.Guest
local x86 = require "moonvisor.x86"
mv.x86 = x86

-- g:vcpu{ entry, mode = "real" | "protected" | "long", stack, tables }: the
-- core makes a real-mode VCPU, moonvisor.x86 puts it in the mode.
local new_vcpu = Guest.vcpu
function Guest.vcpu(g, opts)
  if type(opts) ~= "table" or opts.mode == nil or opts.mode == "real" then return new_vcpu(g, opts) end
  local cpu = new_vcpu(g, { entry = 0 })
  x86.setup(cpu, opts.mode, opts)
  return cpu
end

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
  return core.guest(opts)
end

-- Enters until the guest halts, shuts down, errors or leaves an exit that no
-- handler consumed.  Kicks end the run too, so Ctrl-C and timeouts work.
local enter = Vcpu.enter

-- "moonvisor.Vcpu" for our userdata, the plain type otherwise (as the C side's lmv_typename).
local function typename(v)
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

-- cpu:run{ timeout_ms = N } ends a guest that spins with a "timeout" exit.
function Vcpu:run(opts)
  if typename(self) ~= "moonvisor.Vcpu" then
    error("vcpu:run: expected a moonvisor.Vcpu, got " .. typename(self), 2)
  end
  return rename(pcall(enter, self, opts))
end

return mv
