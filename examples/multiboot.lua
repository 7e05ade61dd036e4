-- multiboot.lua - boots a Multiboot v1 kernel, as `qemu -kernel` would.
--
--   moonvisor examples/multiboot.lua [options] KERNEL [cmdline...]
--     --module PATH[=CMDLINE]   load a module (repeatable; its command line
--                               defaults to PATH)
--     --mem MIB                 RAM above 1 MiB, in MiB (default 63)
--     --timeout MS              end a kernel that runs longer (default: none)
--
-- Shows: load.multiboot (ELF or a.out-kludge kernel, info structure, memory
-- map, command line, modules) and a small PC made of the device models:
-- a 16550 on COM1 (0x3f8) whose output goes to stdout (moonvisor.dev.uart),
-- CMOS/RTC, the i8042 reset path, POST port 0x80 and an empty PCI bus.
-- The kernel starts in 32-bit protected mode with EAX = 0x2BADB002 and EBX
-- = the info structure, as the Multiboot spec says.  Port 0xf4 follows QEMU's
-- isa-debug-exit: writing v ends the run with exit status (v << 1) | 1.
-- A kernel that halts (nothing can wake it: there is no interrupt source
-- here) ends the run with status 0; a reset, too.  A fault, a shutdown or a
-- timeout ends it with status 2.  The kernel's command line is, as with
-- QEMU, the kernel's path followed by the arguments.
--
-- The Makefile builds examples/guests/mbhello.S, a kernel that prints its
-- command line and its modules and exits through port 0xf4:
--   build/moonvisor examples/multiboot.lua --module examples/guests/mbmodule.txt=greeting \
--     build/guests/mbhello.elf hello world        # exit status 33
local mv = require "moonvisor"
local load = require "moonvisor.load"
local dev = require "moonvisor.dev"

local function usage(msg)
  io.stderr:write("multiboot: ", msg, "\n",
    "usage: moonvisor examples/multiboot.lua [--module PATH[=CMDLINE]]... [--mem MIB] [--timeout MS] KERNEL [cmdline...]\n")
  os.exit(2)
end

local modules, mem_mib, timeout_ms, kernel, words = {}, 63, nil, nil, {}
local i = 1
while i <= #arg do
  local a = arg[i]
  local opt, val = a:match("^(%-%-[%w-]+)=(.*)$")
  opt = opt or a
  local function value()
    if val then return val end
    i = i + 1
    if arg[i] == nil then usage(opt .. " needs a value") end
    return arg[i]
  end
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
  i = i + 1
end
if not kernel then usage("no kernel given") end
local cmdline = table.concat({ kernel, table.unpack(words) }, " ")

-- The machine: 640 KiB of low RAM, RAM from 1 MiB, the devices.
local g <close> = mv.guest{}
g:map(0, mv.vmo(0xA0000))
g:map(0x100000, mv.vmo(mem_mib << 20))

local uart = require("moonvisor.dev.uart").new(g, { base = 0x3f8 })
local ending   -- why the run ended, when a device ended it
local function stop(why) return function(_, cpu) ending = ending or why; cpu:kick() end end
require("moonvisor.dev.cmos").new(g, { mem_size = (mem_mib + 1) << 20 })
require("moonvisor.dev.i8042").new(g, { on_reset = stop("reset (i8042)") })
require("moonvisor.dev.misc").new(g, { on_reset = stop("reset (0xcf9)") })
g:trap("io", 0xf4, 1, function(e)             -- isa-debug-exit
  uart:flush()
  io.stdout:flush()
  os.exit(((e.data & 0xffffffff) << 1 | 1) & 0xff)
end)

local ok, mb = pcall(load.multiboot, g, kernel, { cmdline = cmdline, modules = modules })
if not ok then io.stderr:write("multiboot: ", tostring(mb), "\n") os.exit(2) end

local cpu = g:vcpu{ entry = mb.entry, mode = mb.mode }
cpu:write_state(mb.regs)

local unclaimed = dev.unclaimed()
local t0, exit = os.clock(), nil             -- CPU time: the VCPU runs on this thread
repeat
  local opts
  if timeout_ms then
    local left = timeout_ms - (os.clock() - t0) * 1000
    if left <= 0 then exit = { type = "timeout" } break end
    opts = { timeout_ms = left }
  end
  exit = cpu:enter(opts)
until not unclaimed:count(exit)
uart:flush()

local function report(status, fmt, ...)
  io.stderr:write(("multiboot: " .. fmt .. "\n"):format(...))
  if unclaimed.total > 0 then
    io.stderr:write(("multiboot: %d accesses nothing claimed:\n%s\n"):format(unclaimed.total, unclaimed:report()))
  end
  os.exit(status)
end
if ending then report(0, "the kernel asked for a %s", ending) end
if exit.type == "hlt" then report(0, "the kernel halted at eip 0x%x", cpu.rip) end
if exit.type == "exception" then report(2, "exception %d at eip 0x%x", exit.vector, exit.rip) end
report(2, "the run ended with a %s exit at eip 0x%x", exit.type, cpu.rip)
