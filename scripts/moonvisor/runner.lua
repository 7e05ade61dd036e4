-- moonvisor.runner: `moonvisor run`, a kernel runner that speaks QEMU's
-- command-line vocabulary, thin over moonvisor.pc and moonvisor.boot (a
-- script can do all of it with those two).
--
--   moonvisor run -kernel K [-append CMDLINE] [-initrd F] [-m MIB] [-smp N]
--                 [-serial stdio|file:PATH|null|none] [-gdb tcp::PORT] [-s] [-S]
--                 [-no-reboot] [-device isa-debug-exit[,iobase=N][,iosize=N]]
--                 [-fw_cfg name=NAME,file=PATH|string=S] [-accel kvm|tcg]
--                 [--timeout MS] [--report] [--stats] [--show-vga]
--
--   local runner = require "moonvisor.runner"
--   local status = runner.main({ "-kernel", "k.elf", "-m", "64" })
--   local cfg = runner.parse(args)      -- the options as a table, or nil, message
--
-- Exit statuses: the guest's isa-debug-exit value v as (v << 1) | 1 (odd);
-- 0 after an ACPI power-off; 2 for bad input (options, files, kernels that
-- cannot be loaded) with "moonvisor run: ..." naming the file and reason;
-- 4 when the guest stopped otherwise (halted for good, triple fault, reset
-- with -no-reboot, suspend, an exit nothing handles, killed from gdb), 124
-- after --timeout; each with a one-line reason on stderr.  `moonvisor --gdb
-- H:P run ...` is `-gdb tcp:H:P -S`.
--
-- With -serial stdio on a terminal (fd 0 is a tty) the terminal is COM1's
-- both ways (moonvisor.console: raw mode, restored on every way out):
-- Ctrl-A x quits (status 0, as QEMU's), Ctrl-A h lists the keys.  When
-- stdin is a pipe or a file its bytes are COM1's input (M.stdin_feeder).
local pc = require "moonvisor.pc"

local M = {}

M.USAGE = [[
usage: moonvisor run -kernel FILE [options]
Boots FILE as `qemu-system-x86_64 -kernel FILE` would: a Linux bzImage,
a Multiboot kernel (ELF or a.out kludge) or an ELF kernel with a PVH note,
on moonvisor's PC (moonvisor.pc: QEMU's pc memory map, fw_cfg, ACPI, 16550,
i8042, CMOS/RTC, ACPI PM, PCI host bridge, isa-debug-exit).
  -kernel FILE      the kernel (required)
  -append CMDLINE   its command line
  -initrd FILE      Linux/PVH initrd; Multiboot modules as QEMU: "f1 args,f2 args"
  -m SIZE           RAM: MiB, or with a suffix (512M, 2G); default 128
  -smp N            CPUs (fw_cfg, MADT, CMOS); on KVM each a VCPU, started by
                    the boot CPU (INIT/SIPI); on soft only the boot CPU runs
  -serial DEV       COM1: stdio (default), file:PATH, null, none
  -gdb tcp::PORT    gdb stub (also tcp:HOST:PORT); -s is -gdb tcp::1234
  -S                wait for gdb before the first instruction
  -no-reboot        a reset ends the run (status 4) instead of rebooting
  -device isa-debug-exit[,iobase=N][,iosize=N]
                    the debug exit device (moonvisor has one at 0xf4, 4 ports,
                    by default; QEMU's defaults for -device are 0x501, 2)
  -fw_cfg name=NAME,file=PATH | name=NAME,string=STR   an extra fw_cfg file
  -accel kvm|tcg    the backend: kvm, or soft (Unicorn) for tcg; -enable-kvm
  -machine pc|q35, -cpu X, -nographic, -display none, -vga none, -nodefaults,
  -no-user-config, -monitor none, -name X: accepted, no effect
  --timeout MS      end the run after MS milliseconds (status 124)
  --report          print the devices' counters and unclaimed accesses at the end
  --stats           print the exits to moonvisor by type and by device at the end
  --show-vga        print the VGA text screen at the end
With -serial stdio on a terminal, the terminal is the guest's serial console
both ways: Ctrl-A x quits, Ctrl-A h lists the keys.  A piped stdin is its
input once the guest's driver takes input (receive interrupt enabled).
Exit status: (v << 1) | 1 for isa-debug-exit value v; 0 on ACPI power-off
(and Ctrl-A x); 2 bad input; 4 the guest stopped otherwise (a kernel panic
too); 124 timeout.]]

local function parse_int(s)
  if type(s) ~= "string" then return nil end
  if s:match("^0[xX]%x+$") then return tonumber(s:sub(3), 16) end
  if s:match("^%d+$") then return tonumber(s) end
  return nil
end

-- "-m" values: MiB, or a number with K/M/G/T suffix; "size=" prefix allowed.
function M.parse_size(s)
  s = s:gsub("^size=", ""):gsub(",.*$", "")
  local n, unit = s:match("^(%d+)([kKmMgGtT]?)[bB]?$")
  if not n then return nil end
  n = math.tointeger(tonumber(n))
  local shift = ({ [""] = 20, k = 10, K = 10, m = 20, M = 20, g = 30, G = 30, t = 40, T = 40 })[unit]
  if not n or n > (1 << (62 - shift)) then return nil end
  return n << shift
end

-- "a=1,b=2" and a leading word: kind, { key = value }.
local function parse_props(s)
  local first, rest = s:match("^([^,]*),?(.*)$")
  local props = {}
  local kind = first
  if first:find("=", 1, true) then kind, rest = nil, s end
  if kind == "" then kind = nil end
  for kv in (rest or ""):gmatch("[^,]+") do
    local k, v = kv:match("^([^=]+)=(.*)$")
    props[k or kv] = v or true
  end
  return kind, props
end

local function host_ram()
  local f = io.open("/proc/meminfo")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  local kb = text:match("MemTotal:%s*(%d+)")
  return kb and tonumber(kb) * 1024
end

local function gib(n) return ("%.1f GiB"):format(n / (1 << 30)) end

-- runner.parse(args) -> cfg, or nil and a message.
function M.parse(args)
  local cfg = { mem = 128 << 20, cpus = 1, serial = "stdio", append = "", files = {} }
  local i = 1
  local function value(opt)
    i = i + 1
    if args[i] == nil then error(opt .. " needs a value", 0) end
    return args[i]
  end
  local ok, err = pcall(function()
    while i <= #args do
      local a = args[i]
      local opt = a:gsub("^%-%-", "-")
      if a == "--timeout" then
        local v = tonumber(value(a))
        if not v or v <= 0 then error("--timeout wants a number of milliseconds", 0) end
        cfg.timeout_ms = v
      elseif a == "--report" then cfg.report = true
      elseif a == "--stats" then cfg.stats = true
      elseif a == "--show-vga" then cfg.show_vga = true
      elseif a == "--backend" then
        cfg.backend = value(a)
        if cfg.backend ~= "kvm" and cfg.backend ~= "soft" then error("--backend wants kvm or soft", 0) end
      elseif opt == "-h" or opt == "-help" then cfg.help = true
      elseif opt == "-kernel" then cfg.kernel = value(a)
      elseif opt == "-append" then cfg.append = value(a)
      elseif opt == "-initrd" then cfg.initrd = value(a)
      elseif opt == "-m" then
        local v = value(a)
        local n = parse_int(v)
        cfg.mem = n and n << 20 or M.parse_size(v)
        if not cfg.mem or cfg.mem < pc.MIN_MEM then error(("-m %s: want at least 2 MiB (a number of MiB or 512M, 2G)"):format(v), 0) end
      elseif opt == "-smp" then
        local v = value(a)
        local kind, props = parse_props(v)
        local n = parse_int(kind or "") or parse_int(props.cpus or "")
        if not n or n < 1 or n > 255 then error(("-smp %s: want 1..255 CPUs"):format(v), 0) end
        cfg.cpus = n
      elseif opt == "-serial" then
        local v = value(a)
        if v == "stdio" or v == "mon:stdio" then cfg.serial = "stdio"
        elseif v == "null" or v == "none" then cfg.serial = v
        elseif v:match("^file:.") then cfg.serial = v
        else error(("-serial %s: supported are stdio, file:PATH, null, none"):format(v), 0) end
      elseif opt == "-gdb" then
        local v = value(a)
        local host, port = v:match("^tcp:([^:]*):(%d+)$")
        if not port then host, port = v:match("^([^:]*):(%d+)$") end
        if not port then error(("-gdb %s: want tcp::PORT or tcp:HOST:PORT"):format(v), 0) end
        cfg.gdb = { host = host ~= "" and host or "127.0.0.1", port = tonumber(port) }
      elseif opt == "-s" then cfg.gdb = { host = "127.0.0.1", port = 1234 }
      elseif opt == "-S" then cfg.wait_gdb = true
      elseif opt == "-no-reboot" then cfg.no_reboot = true
      elseif opt == "-device" then
        local v = value(a)
        local kind, props = parse_props(v)
        if kind ~= "isa-debug-exit" then error(("-device %s: the only device is isa-debug-exit"):format(v), 0) end
        local iobase = props.iobase and parse_int(props.iobase) or 0x501
        local iosize = props.iosize and parse_int(props.iosize) or 2
        if not iobase or iobase > 0xffff or not iosize or iosize < 1 or iobase + iosize > 0x10000 then
          error(("-device %s: bad iobase or iosize"):format(v), 0)
        end
        cfg.debug_exit = { iobase = iobase, iosize = iosize }
      elseif opt == "-fw_cfg" then
        local v = value(a)
        local _, props = parse_props(v)
        local name = props.name
        if type(name) ~= "string" then error(("-fw_cfg %s: name= is required"):format(v), 0) end
        if props.file then
          local f = io.open(props.file, "rb")
          if not f then error(("-fw_cfg %s: cannot open %s"):format(v, props.file), 0) end
          cfg.files[name] = f:read("a")
          f:close()
        elseif props.string then cfg.files[name] = props.string
        else error(("-fw_cfg %s: file= or string= is required"):format(v), 0) end
      elseif opt == "-accel" then
        local v = value(a):match("^[^,]+")
        if v == "kvm" then cfg.backend = "kvm" elseif v == "tcg" then cfg.backend = "soft"
        else error(("-accel %s: kvm or tcg"):format(v), 0) end
      elseif opt == "-enable-kvm" then cfg.backend = "kvm"
      elseif opt == "-machine" or opt == "-M" then
        local v = value(a)
        local kind = parse_props(v)
        if kind and not (kind:match("^pc") or kind:match("^q35")) then
          error(("-machine %s: moonvisor's PC is QEMU's pc machine"):format(v), 0)
        end
      elseif opt == "-cpu" or opt == "-display" or opt == "-vga" or opt == "-monitor" or opt == "-name" then
        value(a)
      elseif opt == "-nographic" or opt == "-nodefaults" or opt == "-no-user-config" then
        -- nothing to do: there is no display, and COM1 is stdio
      else
        error(("unknown option %s (moonvisor run -h lists them)"):format(a), 0)
      end
      i = i + 1
    end
  end)
  if not ok then return nil, err end
  if cfg.help then return cfg end
  if not cfg.kernel then return nil, "no kernel: -kernel FILE is required" end
  if cfg.wait_gdb and not cfg.gdb then return nil, "-S waits for gdb: give -gdb tcp::PORT (or -s) too" end
  return cfg
end

local function say(fmt, ...)
  io.stderr:write("moonvisor run: ", fmt:format(...), "\n")
  io.stderr:flush()
end

-- The machine for cfg: pc.new's options.
local function machine_options(cfg, out)
  local serial
  if cfg.serial == "none" then serial = false
  elseif cfg.serial == "null" then serial = { output = false }
  elseif cfg.serial == "stdio" then serial = {}
  else serial = { output = function(s) out:write(s) end } end
  return { mem = cfg.mem, cpus = cfg.cpus, backend = cfg.backend, serial = serial,
           debug_exit = cfg.debug_exit, files = cfg.files }
end

local function default_backend()
  local env = os.getenv("MOONVISOR_BACKEND")
  if env and env ~= "" then return env end
  local f = io.open("/dev/kvm")
  if f then f:close() return "kvm" end
  return "soft"
end

-- Runs machine m with the terminal as its console until it ends, the
-- deadline passes or Ctrl-A x: m:run's result ({ kind = "quit", status =
-- 0 } for the last).
function M.interact(m, deadline, timeout_reason, poll)
  local clock = require("moonvisor").clock
  local c = require("moonvisor.console").new{ uart = m.dev.uart, step = function(ms)
    local left = deadline and (deadline - clock()) * 1000
    if left and left <= 0 then
      return m:_finish({ kind = "timeout", status = pc.STATUS.timeout, reason = timeout_reason })
    end
    return m:step(math.max(1, math.floor(math.min(ms, left or ms))), { poll = poll })
  end }
  local r, how = c:interact()
  io.stdout:write("\n")
  if how == "quit" then r = m:_finish({ kind = "quit", status = 0, reason = "quit from the console (Ctrl-A x)" }) end
  return r
end

-- With -serial stdio and a stdin that is no terminal (a pipe, a file):
-- a poll function that hands stdin's bytes to m's UART, once the guest's
-- driver has had its receive interrupt enabled at two polls in a row (so
-- that a driver resetting the chip at start drops none: Linux's probe sets
-- every IER bit for a moment, and its start-up then reads the receiver
-- once, which would eat a byte fed in that moment), and the UART took what
-- it had before (so a large file is read as the guest reads it, never all
-- at once).
function M.stdin_feeder(m)
  local core = require "moonvisor.core"
  local uart, ended, enabled_before = m.dev.uart, false, false
  return function()
    if ended or not uart then return end
    local enabled = uart.ier & 1 ~= 0
    local steady = enabled and enabled_before
    enabled_before = enabled
    if not steady or #uart.inq > 0 then return end
    local bytes = core.read_fd(0, 4096, 0)
    if bytes == "" then ended = true elseif bytes then uart:feed(bytes) end
  end
end

-- --stats: the exits to userspace by type and by device.
function M.print_stats(m)
  local s = m:exit_stats()
  local types = {}
  for t, n in pairs(s.exits) do types[#types + 1] = ("%s %d"):format(t, n) end
  table.sort(types)
  say("exits: %d (%s)", s.total, table.concat(types, ", "))
  local devs = {}
  for _, d in ipairs(s.devices) do devs[#devs + 1] = ("%s %d"):format(d.name, d.exits) end
  say("exits by device: %s", #devs > 0 and table.concat(devs, ", ") or "none")
end

-- runner.main(args) -> exit status.
function M.main(args)
  local cfg, err = M.parse(args)
  if not cfg then
    say("%s", err)
    return pc.STATUS.bad_input
  end
  if cfg.help then
    io.stdout:write(M.USAGE, "\n")
    return 0
  end
  cfg.backend = cfg.backend or default_backend()
  local mv = require "moonvisor"
  if mv.options.gdb then           -- moonvisor --gdb H:P run ...: as -gdb tcp:H:P -S
    local host, port = require("moonvisor.gdb").parse_address(mv.options.gdb)
    mv.options.gdb = nil
    cfg.gdb, cfg.wait_gdb = { host = host, port = port }, true
  end
  local host = host_ram()
  if host and cfg.mem > host then
    say("-m: %s of RAM is more than this host has (%s)", gib(cfg.mem), gib(host))
    return pc.STATUS.bad_input
  end
  local f = io.open(cfg.kernel, "rb")
  if not f then
    local _, e = io.open(cfg.kernel, "rb")
    say("%s", tostring(e))
    return pc.STATUS.bad_input
  end
  f:close()
  local out
  if cfg.serial:match("^file:") then
    local path = cfg.serial:sub(6)
    local e
    out, e = io.open(path, "wb")
    if not out then say("-serial %s: %s", cfg.serial, tostring(e)) return pc.STATUS.bad_input end
    out:setvbuf("no")
  end

  local gdb = cfg.gdb and require("moonvisor.gdb")
  local interactive = cfg.serial == "stdio" and require("moonvisor.core").isatty(0)
  if interactive then say("COM1 is this terminal: Ctrl-A x quits, Ctrl-A h lists the keys") end
  local status
  local first = true
  local deadline = cfg.timeout_ms and require("moonvisor").clock() + cfg.timeout_ms / 1000
  while true do
    local ok, m = pcall(pc.new, machine_options(cfg, out))
    if not ok then
      say("%s", tostring(m):gsub("^pc%.new: ", ""))
      return pc.STATUS.bad_input
    end
    local bok, berr = pcall(m.boot, m, { kernel = cfg.kernel, cmdline = cfg.append, initrd = cfg.initrd })
    if not bok then
      m:close()
      say("%s", tostring(berr))
      return pc.STATUS.bad_input
    end
    local srv, r
    if gdb then
      local sok, s = pcall(gdb.gdbserver, m.g, {
        host = cfg.gdb.host, port = cfg.gdb.port, cpu = m.cpu, wait = false, quiet = not first,
        absorb = function(e) return m.unclaimed:count(e) end,
        finished = function() return m.stopped and m.stopped.status end })
      if not sok then
        m:close()
        say("-gdb: %s", tostring(s):gsub("^guest:gdbserver: ", ""))
        return pc.STATUS.bad_input
      end
      srv = s
    end
    local function gdb_end(g)
      if g and g.how == "kill" then
        r = { kind = "kill", status = pc.STATUS.stopped, reason = "killed from gdb" }
      end
    end
    if srv and cfg.wait_gdb and first then
      m:run_to_entry()             -- the firmware stub is not the kernel: gdb starts at the kernel's entry
      if not m.stopped then gdb_end(srv:serve()) end
    end
    if not r then
      if m.stopped then
        r = m:_finish(m.stopped)
      else
        local clock = require("moonvisor").clock
        local left = deadline and math.max(1, (deadline - clock()) * 1000)
        local reason = cfg.timeout_ms and ("no end after %d ms (--timeout)"):format(cfg.timeout_ms)
        local poll = srv and function() gdb_end(srv:poll()) if r then m:_event(r) end end
        if cfg.serial == "stdio" and not interactive then
          local gdb_poll, feed = poll, M.stdin_feeder(m)
          poll = function() feed() if gdb_poll then gdb_poll() end end
        end
        if interactive then
          r = M.interact(m, deadline, reason, poll)
        else
          r = m:run{ timeout_ms = left, timeout_reason = reason, poll = poll }
        end
      end
    end
    if srv then srv:close() end
    if cfg.stats then M.print_stats(m) end
    if cfg.report then for _, l in ipairs(m:report()) do io.stderr:write("moonvisor run: ", l, "\n") end end
    if cfg.show_vga then
      local lines = m.dev.vga:text()
      io.stderr:write("moonvisor run: VGA text screen (", #lines, " lines):\n")
      for _, l in ipairs(lines) do io.stderr:write(l, "\n") end
    end
    m:close()
    first = false
    if (r.kind == "reset" or r.kind == "triple-fault") and not cfg.no_reboot then
      -- QEMU resets the machine and boots the kernel again.
    else
      if r.kind ~= "debug-exit" and r.kind ~= "poweroff" then say("%s", r.reason) end
      status = r.status
      break
    end
  end
  io.stdout:flush()
  if out then out:close() end
  return status
end

return M
