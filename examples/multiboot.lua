-- multiboot.lua - boots a Multiboot v1 kernel, as `qemu -kernel` would.
--
--   moonvisor examples/multiboot.lua [options] KERNEL [cmdline...]
--     --module PATH[=CMDLINE]   load a module (repeatable; its command line
--                               defaults to PATH)
--     --mem MIB                 RAM above 1 MiB, in MiB (default 63)
--     --timeout MS              end a kernel that runs longer (default: none)
--
-- Shows: a script doing by hand what `moonvisor run` does for Multiboot
-- kernels: moonvisor.pc (QEMU's pc memory map, fw_cfg, ACPI tables, a
-- 16550 on COM1 whose output goes to stdout, CMOS/RTC, i8042, PCI host
-- bridge, ACPI PM, isa-debug-exit at 0xf4), load.multiboot given the
-- machine's e820 map and reserved areas (so a kernel linked the ordinary
-- way, with its ELF headers in a segment at 0xff000, loads), the boot VCPU
-- in 32-bit protected mode with EAX = 0x2BADB002 and EBX = the info
-- structure, as the Multiboot spec says, and m:run().  Port 0xf4 follows
-- QEMU's isa-debug-exit: writing v ends the run with exit status
-- (v << 1) | 1.  A kernel that halts for good (interrupts off, or nothing
-- to wake it) ends the run with status 0; a reset or an ACPI power-off,
-- too.  A fault, a shutdown or a timeout ends it with status 2.  The
-- kernel's command line is, as with QEMU, the kernel's path followed by the
-- arguments.
--
-- The Makefile builds examples/guests/mbhello.S, a kernel that prints its
-- command line and its modules and exits through port 0xf4:
--   build/moonvisor examples/multiboot.lua --module examples/guests/mbmodule.txt=greeting \
--     build/guests/mbhello.elf hello world        # exit status 33
local load = require "moonvisor.load"
local pc = require "moonvisor.pc"

local function usage(msg)
  io.stderr:write("multiboot: ", msg, "\n",
    "usage: moonvisor examples/multiboot.lua [--module PATH[=CMDLINE]]... [--mem MIB] [--timeout MS] KERNEL [cmdline...]\n")
  os.exit(2)
end

local modules, mem_mib, timeout_ms, kernel, words = {}, 63, nil, nil, {}
for opt, value, a in require("moonvisor.cli").options(arg, usage) do
  if kernel then words[#words + 1] = a
  elseif opt == "--module" then
    local v = value()
    local path, cmd = v:match("^([^=]*)=(.*)$")
    modules[#modules + 1] = { path = path or v, cmdline = cmd or v }
  elseif opt == "--mem" then
    mem_mib = math.tointeger(tonumber(value()))
    if not mem_mib or mem_mib < 1 or mem_mib > 3000 then usage("--mem wants a number of MiB, 1..3000") end
  elseif opt == "--timeout" then
    timeout_ms = tonumber(value())
    if not timeout_ms or timeout_ms <= 0 then usage("--timeout wants a number of milliseconds") end
  elseif opt == "-h" or opt == "--help" then usage("boots a Multiboot v1 kernel")
  elseif a:sub(1, 1) == "-" and a ~= "-" then usage("unknown option " .. a)
  else kernel = a end
end
if not kernel then usage("no kernel given") end
local cmdline = table.concat({ kernel, table.unpack(words) }, " ")

-- The machine: QEMU's pc layout, with mem_mib MiB above 1 MiB.
local m <close> = pc.new{ mem = (mem_mib + 1) << 20 }

local ok, mb = pcall(load.multiboot, m.g, kernel, { cmdline = cmdline, modules = modules,
                                                     mmap = m.e820, reserved = m.reserved })
if not ok then io.stderr:write("multiboot: ", tostring(mb), "\n") os.exit(2) end
m:start(mb.entry, mb.mode, mb.regs)

local r = m:run{ timeout_ms = timeout_ms }

local function report(status, fmt, ...)
  io.stderr:write(("multiboot: " .. fmt .. "\n"):format(...))
  if m.unclaimed.total > 0 then
    io.stderr:write(("multiboot: %d accesses nothing claimed:\n%s\n"):format(m.unclaimed.total, m.unclaimed:report()))
  end
  io.stdout:flush()
  os.exit(status)
end
if r.kind == "debug-exit" then io.stdout:flush() os.exit(r.status) end
if r.kind == "reset" or r.kind == "poweroff" then report(0, "%s", r.reason) end
if r.kind == "halt" then report(0, "the kernel halted at eip 0x%x", r.rip) end
report(2, "%s", r.reason)
