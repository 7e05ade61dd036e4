-- host.lua - mv.host([backend]): what this backend on this host really
-- does, asked of it rather than assumed.  KVM hosts differ from hardware in
-- ways no capability reports (../README.md, "Backends"): kvm-pvm and QEMU's
-- emulated SVM advertise guest debugging but do not intercept int3, some
-- fire no hardware breakpoints, kvm-pvm pages only in long mode.  The
-- answers come from tiny guests run once per process and backend, in a
-- scratch VM, the first time someone asks:
--
--   backend                  "kvm" | "soft"
--   kind                     "hardware" | "pvm" | "nested" (KVM inside a VM) | "soft"
--   int3_exit                int3 with breakpoints on gives a debug exit (exception 3)
--   int3_idt                 without that: int3 in 64-bit ring 0 reaches the guest's IDT
--   hw_breakpoints           DR0-3 instruction breakpoints give debug exits
--   step_hlt                 a single step over hlt gives a `hlt` exit
--   paging_without_long_mode 32-bit paging (CR0.PG without EFER.LME) is applied
--   dirty_exact              the dirty log holds only pages the guest wrote (QEMU's
--                            emulated SVM also logs pages it only read or ran)
--   probe_ms                 how long the probes took
local core = require "moonvisor.core"
local x86 = require "moonvisor.x86"
local modes = require "moonvisor.modes"
local stubs = require "moonvisor.stubs"

local host = {}

-- The core's own methods, captured before moonvisor.breakpoints wraps them
-- (moonvisor's init keeps them in core.raw): the probes must see the host,
-- not the emulation built on their answers.
host.raw = core.raw or { enter = core.Vcpu.enter, debug = core.Vcpu.debug }
local enter, debug = host.raw.enter, host.raw.debug

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

local function cpu_flag(name)
  local f = io.open("/proc/cpuinfo", "r")
  if not f then return false end
  local text = f:read("a")
  f:close()
  return text:find("\nflags%s*:[^\n]*%f[%w]" .. name .. "%f[%W]") ~= nil
end

-- kvm-pvm shows itself as a module in sysfs; a KVM whose own CPU has the
-- hypervisor bit runs inside another VM (nested); else it is the hardware's.
local function kvm_kind()
  if exists("/sys/module/kvm_pvm") then return "pvm" end
  if cpu_flag("hypervisor") then return "nested" end
  return "hardware"
end

local REAL_CODE = 0x1000   -- int3; hlt
local IVT3_HANDLER = 0x2000   -- hlt: where the guest's IVT sends vector 3
local HW_CODE = 0x1100     -- nop; hlt
local HLT_CODE = 0x1200    -- hlt
local LONG_CODE = 0x3000   -- int3; hlt in 64-bit ring 0
local LOGGED = 0x10000     -- a page mapped with log_dirty: hlt

local function is_debug(e, exception) return e.type == "debug" and e.exception == exception end

local function probe(backend)
  local t0 = core.clock()
  local answers = { backend = backend }
  local g <close> = core.guest{ backend = backend }
  g:map(0, core.vmo(0x10000))
  g:write(0, string.pack("<I2I2", 0, 0):rep(3) .. string.pack("<I2I2", IVT3_HANDLER, 0))
  g:write(REAL_CODE, "\xcc\xf4")
  g:write(IVT3_HANDLER, "\xf4")
  g:write(HW_CODE, "\x90\xf4")
  g:write(HLT_CODE, "\xf4")
  g:write(LONG_CODE, "\xcc\xf4")
  g:map(LOGGED, core.vmo(0x1000), { log_dirty = true })
  g:write(LOGGED, "\xf4")
  local cpu = g:vcpu{ entry = REAL_CODE }
  local limit = { timeout_ms = 2000 }

  cpu:write_state{ rip = LOGGED, rflags = 2 }
  g:dirty_pages(LOGGED)
  enter(cpu, limit)
  answers.dirty_exact = #g:dirty_pages(LOGGED) == 0
  cpu:write_state{ rip = REAL_CODE, rflags = 2 }

  debug(cpu, { breakpoints = true })
  answers.int3_exit = is_debug(enter(cpu, limit), 3)

  debug(cpu)
  cpu:write_state{ rip = HW_CODE, rflags = 2 }
  answers.hw_breakpoints = pcall(debug, cpu, { hw = { HW_CODE + 1 } }) and is_debug(enter(cpu, limit), 1)
  debug(cpu)

  cpu:write_state{ rip = HLT_CODE, rflags = 2 }
  debug(cpu, { singlestep = true })
  answers.step_hlt = enter(cpu, limit).type == "hlt"
  debug(cpu)

  modes.setup(cpu, "protected", { entry = HLT_CODE })
  answers.paging_without_long_mode = pcall(cpu.write_sregs, cpu, { cr0 = cpu:sregs().cr0 | x86.CR0.PG, cr3 = 0x4000 })

  if answers.int3_exit then
    answers.int3_idt = false   -- not needed: the host stops at int3 itself
  else
    modes.setup(cpu, "long", { entry = LONG_CODE })
    local e = enter(cpu, limit)
    local taken = stubs.take(cpu, e)
    answers.int3_idt = taken ~= nil and taken.vector == 3
  end
  answers.kind = backend == "soft" and "soft" or kvm_kind()
  answers.probe_ms = (core.clock() - t0) * 1000
  return answers
end

local cache = {}

-- mv.host([backend]): the answers for backend (default: the default
-- backend), probed on first use.
function host.probe(backend)
  if backend ~= nil and backend ~= "kvm" and backend ~= "soft" then
    error(("mv.host: backend must be \"kvm\" or \"soft\", got %s"):format(tostring(backend)), 2)
  end
  backend = backend or os.getenv("MOONVISOR_BACKEND") or "kvm"
  if not cache[backend] then cache[backend] = probe(backend) end
  return cache[backend]
end

return host
