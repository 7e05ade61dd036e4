-- breakpoints.lua - int3 breakpoints and single steps that behave as on
-- hardware KVM on every host.  The REPL, the gdb stub and fuzz coverage all
-- patch 0xCC into guest memory and turn on cpu:debug{ breakpoints = true };
-- they expect a `debug` exit with exception 3 and rip at the int3.  Where
-- the host intercepts int3 (hardware KVM, the soft backend) that is what
-- happens.  Where it does not (kvm-pvm, QEMU's emulated SVM: mv.host()
-- says int3_exit = false), this module wraps cpu:enter() and picks by the
-- probe:
--
--   "idt"   the VCPU's vectors lead to moonvisor's exception stubs (mode
--           "user"; mode "long" where the host sends ring-0 int3 to the
--           IDT): the stubs' vector-3 report becomes the debug exit, rip
--           moved back onto the int3.  The guest runs at full speed.
--   "step"  anything else (real and protected mode, guests with their own
--           IDT): the VCPU runs one instruction at a time and stops before
--           an int3.  Slow (one exit per instruction) but exact, and each
--           step is a fresh enter, so kicks, Ctrl-C and timeouts stop it.
--
-- It also evens out the one single-step difference seen: a step over hlt
-- gives a `hlt` exit everywhere (some hosts report a debug exit after it).
-- Hosts that need none of this pay one table lookup per enter.
local core = require "moonvisor.core"
local host = require "moonvisor.host"
local stubs = require "moonvisor.stubs"
local paging = require "moonvisor.paging"

local M = {}
local Vcpu = core.Vcpu
local raw_debug = host.raw.debug
-- The enter this module wraps: the core's, or a wrapper installed before it
-- was loaded (it loads with the first cpu:debug), which stays in the chain.
local raw_enter = Vcpu.enter

-- cpu -> the settings of its last cpu:debug{}, for VCPUs that need the
-- emulation; absent for the others.
local emulated = setmetatable({}, { __mode = "k" })
local settings = setmetatable({}, { __mode = "k" })   -- cpu -> what cpu:debug last got

local MECHANISMS = { int3 = true, idt = true, step = true }

-- Which mechanism stops this VCPU at int3 now: "int3", "idt" or "step"
-- (cpu:debug{ via = ... } chooses one; otherwise the probe does).
function M.mechanism(cpu)
  local set = settings[cpu]
  if set and set.via then return set.via end
  local h = host.probe(cpu:guest():backend())
  if h.int3_exit then return "int3" end
  local own = stubs.cpus[cpu]
  if own and (own.ring3 or h.int3_idt) then return "idt" end
  return "step"
end

-- cpu:debug{ singlestep, breakpoints, hw, via }: as the core's, plus via =
-- "int3" | "idt" | "step" to force a breakpoint mechanism (for tests and
-- for guests the probe cannot judge).  Returns the previous settings.
function Vcpu.debug(cpu, opts)
  local via = type(opts) == "table" and opts.via or nil
  if via ~= nil and not MECHANISMS[via] then
    error(("vcpu:debug: via must be \"int3\", \"idt\" or \"step\", got %s"):format(tostring(via)), 2)
  end
  local core_opts = opts
  if via and via ~= "int3" and opts.breakpoints then   -- the host must not take the int3 itself
    core_opts = {}
    for k, v in pairs(opts) do core_opts[k] = v end
    core_opts.breakpoints = false
  end
  local old = raw_debug(cpu, core_opts)
  local before = settings[cpu]
  if before then old.breakpoints, old.via = before.breakpoints, before.via end
  local now = { singlestep = false, breakpoints = false }
  if type(opts) == "table" then
    now.singlestep, now.breakpoints, now.hw, now.via = opts.singlestep == true, opts.breakpoints == true, opts.hw, via
  end
  now.core = core_opts
  settings[cpu] = now
  local h = (now.singlestep or now.breakpoints) and host.probe(cpu:guest():backend())
  local need = h and ((now.breakpoints and (via ~= nil and via ~= "int3" or not h.int3_exit))
                      or (now.singlestep and not h.step_hlt))
  emulated[cpu] = need and now or nil
  return old
end

local function byte_at_rip(cpu)
  local g, s = cpu:guest(), cpu:sregs()
  local pa = paging.walk(g, s, s.cs.base + cpu.rip)
  if not pa then return nil end
  local ok, b = pcall(g.u8, g, pa)
  return ok and b or nil
end

local function hlt_exit(e)
  return { type = "hlt", reason = e.reason }
end

-- One single-step enter; a step over hlt is a `hlt` exit.
local function step(cpu, opts)
  local at = byte_at_rip(cpu)
  local e = raw_enter(cpu, opts)
  if at == 0xf4 and e.type == "debug" and e.exception == 1 then return hlt_exit(e) end
  return e
end

-- The guest's vector 3 (the stubs' report on KVM; the soft backend's own
-- exception exit) as the debug exit an intercepting host gives: rip on the int3.
local function from_stub(cpu, e)
  local x = stubs.take(cpu, e) or e
  if x.type ~= "exception" or x.vector ~= 3 then return x end
  cpu.rip = x.rip - 1
  return { type = "debug", exception = 3, rip = x.rip - 1 }
end

-- Runs one instruction at a time until an int3 is next or another exit.
local function step_to_int3(cpu, opts)
  local deadline = opts and opts.timeout_ms and core.clock() + opts.timeout_ms / 1000
  local set = settings[cpu]
  raw_debug(cpu, { singlestep = true, hw = set.hw })
  local ok, e = pcall(function()
    while true do
      local at = byte_at_rip(cpu)
      if at == 0xcc then return { type = "debug", exception = 3, rip = cpu.rip } end
      local left = deadline and math.max(1, math.floor((deadline - core.clock()) * 1000))
      if deadline and core.clock() >= deadline then return { type = "timeout" } end
      local x = raw_enter(cpu, left and { timeout_ms = left } or nil)
      if not (x.type == "debug" and x.exception == 1) then return x end
      if at == 0xf4 then return hlt_exit(x) end
    end
  end)
  raw_debug(cpu, set.core)
  if not ok then error(e, 0) end
  return e
end

-- Errors of the core's enter as it raised them, without this file's position.
local function reraise(ok, ...)
  if ok then return ... end
  error((...), 0)
end

-- cpu:enter(opts), with the emulation where the host needs it.
function Vcpu.enter(cpu, opts)
  local flags = emulated[cpu]
  if not flags then return reraise(pcall(raw_enter, cpu, opts)) end
  if flags.singlestep then
    if flags.breakpoints and M.mechanism(cpu) == "step" and byte_at_rip(cpu) == 0xcc then
      return { type = "debug", exception = 3, rip = cpu.rip }
    end
    local e = step(cpu, opts)
    return flags.breakpoints and from_stub(cpu, e) or e
  end
  if M.mechanism(cpu) == "idt" then return from_stub(cpu, raw_enter(cpu, opts)) end
  return step_to_int3(cpu, opts)
end

return M
