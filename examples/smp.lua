-- smp.lua - several VCPUs at once (guest:run).  The guest
-- (examples/guests/smp.asm, built by `make`): CPU 0 starts the others --
-- with INIT/SIPI through the in-kernel local APIC where there is one (KVM),
-- otherwise by releasing APs the host started at their entry -- then every
-- CPU adds 1 to a shared counter ITERATIONS times with `lock xadd`, reports
-- through an io trap and halts.
--   build/moonvisor examples/smp.lua [cpus] [iterations] [quantum]
-- On KVM the VCPUs run on threads of their own, at once; on the soft
-- backend in turn, `quantum` instructions each, the same way every run.
local mv = require "moonvisor"

local ncpus = tonumber(arg and arg[1]) or 4
local iterations = tonumber(arg and arg[2]) or 10000
local quantum = tonumber(arg and arg[3]) or 1000

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local image = assert(io.open(here .. "/../build/guests/smp.bin", "rb")
                     or io.open(here .. "/guests/smp.bin", "rb"),
                     "build/guests/smp.bin is missing: run `make` first"):read("a")

local backend = os.getenv("MOONVISOR_BACKEND")
local probe = mv.guest{ backend = backend }
local irqchip = probe:backend() == "kvm"        -- start the APs with INIT/SIPI where there is a LAPIC
probe:close()
local g <close> = mv.guest{ backend = backend, irqchip = irqchip }
local ram = mv.vmo(0x100000)
g:map(0, ram)
g:write(0x1000, image)
g:u32(0x50c, iterations)
g:u32(0x510, irqchip and 1 or 0)

local cpus = { g:vcpu{ entry = 0x1000, mode = "protected" } }   -- the BSP: VCPU 0
for i = 1, ncpus - 1 do cpus[#cpus + 1] = g:vcpu{ entry = 0x8000 } end

local reports = {}                              -- in the order the CPUs finished
g:trap("io", 0x520, 4, function(exit, cpu)
  reports[#reports + 1] = { apic_id = exit.data, vcpu = cpu.id, count = g:u32(0x600 + 4 * exit.data) }
  if #reports == ncpus then g:stop() end        -- with an irqchip, hlt does not leave the kernel
end)

local res = g:run(cpus, { timeout_ms = 120000, quantum = quantum })
for _, r in ipairs(reports) do
  print(("cpu %d (apic id %d): %d additions"):format(r.vcpu, r.apic_id, r.count))
end
print(("counter = %d (expected %d); run ended: %s; backend %s%s"):format(g:u32(0x500), ncpus * iterations,
  res.reason, g:backend(), g:backend() == "soft" and (", %d turns of %d instructions"):format(res.turns, quantum) or ""))
if res.reason ~= "stop" and res.reason ~= "halted" then os.exit(1) end
