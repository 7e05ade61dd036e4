-- linux.lua - boots a Linux bzImage through the 64-bit (or 32-bit) boot
-- protocol, as `qemu -kernel` would, on a small PC made of the device models.
--
--   moonvisor examples/linux.lua [options]
--     --kernel PATH      the bzImage (default: the protocol test kernel,
--                        build/guests/bzImage, built by `make guests`)
--     --mem SIZE         RAM, e.g. 256M, 1G, 65536K (default 256M)
--     --cmdline STRING   the kernel command line (default "console=ttyS0")
--     --initrd PATH      an initrd / initramfs
--     --run COMMAND      appended to the command line as moonvisor.run="COMMAND"
--                        (the initramfs of `make linux-initramfs` runs it)
--     --entry 64|32      the entry point (default 64 when the kernel has one)
--     --timeout MS       end a kernel that runs longer (CPU time; default none)
--     --stats            print the VCPU's exits and traps, and the accesses no
--                        device claimed, when the run ends
--
-- The machine: RAM from 0 (0x9F000-0x100000 reserved in the e820 map), a
-- 16550 on COM1 whose output goes to stdout (moonvisor.dev.uart), CMOS/RTC,
-- the i8042 (its reset ends the run), POST port 0x80 and an empty PCI bus
-- (moonvisor.dev.misc), and port 0xf4 as a power-off switch after QEMU's
-- isa-debug-exit: writing v ends the run with exit status v (the test kernel
-- writes 0 when every check passed).  Accesses to anything else complete
-- with all-ones and are counted (--stats shows them).  Exit status: 0 for
-- a reset, a halt or a 0 on port 0xf4; 2 for an exception, a shutdown or a
-- timeout.
--
-- A real kernel (not part of `make test`; see README, "Booting Linux"):
--   make linux-initramfs       # build/linux/initramfs.cpio.gz: busybox-static + /init
--   build/moonvisor examples/linux.lua --kernel /boot/vmlinuz-* \
--     --initrd build/linux/initramfs.cpio.gz --cmdline "console=ttyS0 panic=-1" --run 'uname -a'
-- For a shell on the terminal use `moonvisor run` (scripts/moonvisor/runner.lua),
-- from Lua moonvisor.linux_shell; `make test-linux` tests both.
-- On KVM the guest gets the in-kernel irqchip and PIT; the soft backend has
-- no interrupt controller or timer, so a real kernel cannot get far there.
local mv = require "moonvisor"
local linux = require "moonvisor.linux"
local dev = require "moonvisor.dev"

local function usage(msg)
  io.stderr:write("linux: ", msg, "\n",
    "usage: moonvisor examples/linux.lua [--kernel bzImage] [--mem 256M] [--cmdline ...] [--initrd PATH]\n",
    "       [--run 'command'] [--entry 64|32] [--timeout MS] [--stats]\n")
  os.exit(2)
end

-- The test kernel next to this script: ../build/guests (source tree) or guests/ (installed).
local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local function default_kernel()
  for _, p in ipairs{ here .. "/../build/guests/bzImage", here .. "/guests/bzImage", "build/guests/bzImage" } do
    local f = io.open(p, "rb")
    if f then f:close() return p end
  end
  return "build/guests/bzImage"
end

local function size_arg(s)
  local n, unit = s:match("^(%d+)([KkMmGg]?)$")
  n = n and math.tointeger(tonumber(n))
  if not n then usage("--mem wants a size such as 256M, 1G or 65536K") end
  local shift = ({ [""] = 20, k = 10, m = 20, g = 30 })[unit:lower()]
  return n << shift
end

local o = { mem = 256 << 20, cmdline = "console=ttyS0" }
for opt, value, a in require("moonvisor.cli").options(arg, usage) do
  if opt == "--kernel" then o.kernel = value()
  elseif opt == "--mem" then o.mem = size_arg(value())
  elseif opt == "--cmdline" then o.cmdline = value()
  elseif opt == "--initrd" then o.initrd = value()
  elseif opt == "--run" then o.run = value()
  elseif opt == "--entry" then o.entry = value()
  elseif opt == "--timeout" then
    o.timeout = tonumber(value())
    if not o.timeout or o.timeout <= 0 then usage("--timeout wants a number of milliseconds") end
  elseif opt == "--stats" then o.stats = true
  elseif opt == "-h" or opt == "--help" then usage("boots a Linux bzImage")
  else usage("unknown argument " .. a) end
end
if o.mem < (2 << 20) or o.mem % 4096 ~= 0 then usage("--mem must be at least 2M, in whole pages") end
if o.run then
  if o.run:find('"', 1, true) then usage("--run: the command may not contain a double quote") end
  o.cmdline = o.cmdline .. ' moonvisor.run="' .. o.run .. '"'
end
o.kernel = o.kernel or default_kernel()

-- The machine.  On KVM a real kernel wants an interrupt controller and a timer.
local kvm = mv.default_backend == "kvm"
local g <close> = mv.guest{ irqchip = kvm }
local uart = require("moonvisor.dev.uart").new(g, { base = 0x3f8 })
local ending, status
local function stop(why, code)
  return function(_, cpu) ending, status = ending or why, status or code; cpu:kick() end
end
require("moonvisor.dev.cmos").new(g, { mem_size = o.mem })
local kbc = require("moonvisor.dev.i8042").new(g, { on_reset = stop("reset (i8042)", 0) })
local misc = require("moonvisor.dev.misc").new(g, { on_reset = stop("reset (0xcf9)", 0) })
g:trap("io", 0xf4, 1, function(e, cpu)    -- power-off with a status (isa-debug-exit's port)
  ending, status = ending or ("power-off through port 0xf4 with " .. (e.data & 0xff)), status or (e.data & 0xff)
  cpu:kick()
end)

local ok, boot, cpu = pcall(linux.boot, g, { kernel = o.kernel, cmdline = o.cmdline, initrd = o.initrd,
                                              mem = o.mem, entry = o.entry })
if not ok then io.stderr:write(tostring(boot), "\n") os.exit(2) end
io.stderr:write(("linux: %s (boot protocol %s) at 0x%x, %s entry at 0x%x, zero page 0x%x, %d MiB%s\n"):format(
  boot.file, boot.header.version_string, boot.kernel_addr, boot.mode, boot.entry, boot.zero_page,
  o.mem >> 20, boot.initrd_addr and (", initrd at 0x%x (%d bytes)"):format(boot.initrd_addr, boot.initrd_size) or ""))

local unclaimed = dev.unclaimed()
local t0, exit = os.clock(), nil          -- CPU time: the VCPU runs on this thread
local w0 = os.time()
repeat
  local opts
  if o.timeout then
    local left = o.timeout - (os.clock() - t0) * 1000
    if left <= 0 then exit = { type = "timeout" } break end
    opts = { timeout_ms = left }
  end
  exit = cpu:enter(opts)
until not unclaimed:count(exit)
uart:flush()
io.stdout:flush()

local function report(code, fmt, ...)
  io.stderr:write(("linux: " .. fmt .. " after %.2f s of CPU time (%d s wall)\n"):format(
    ..., os.clock() - t0, os.time() - w0))
  if o.stats then
    local s = cpu:stats()
    local types = {}
    for t, n in pairs(s.exits) do types[#types + 1] = ("%s %d"):format(t, n) end
    for t, n in pairs(s.handled) do types[#types + 1] = ("%s %d handled"):format(t, n) end
    table.sort(types)
    io.stderr:write("linux: exits: ", table.concat(types, ", "), "\n")
    for _, t in ipairs(s.traps) do
      io.stderr:write(("linux:   trap %s 0x%x+0x%x: %d calls\n"):format(t.kind, t.addr, t.size, t.calls))
    end
    io.stderr:write(("linux: uart %d bytes sent; POST codes %d; i8042 resets %d\n"):format(
      uart:stats().tx, misc:stats().posts, kbc.resets))
    io.stderr:write(("linux: %d accesses nothing claimed%s\n"):format(unclaimed.total,
      unclaimed.total > 0 and (":\n" .. unclaimed:report()) or ""))
  end
  os.exit(code)
end
if ending then report(status, "%s", ending) end
if exit.type == "hlt" then report(0, "the kernel halted at rip 0x%x", cpu.rip) end
if exit.type == "exception" then report(2, "exception %d at rip 0x%x", exit.vector, exit.rip) end
report(2, "the run ended with a %s exit at rip 0x%x", exit.type, cpu.rip)
