-- moonvisor.pc: a PC in Lua, laid out as QEMU's pc machine (i440FX + PIIX)
-- shows itself to a kernel booted with `-kernel`: its memory map, fw_cfg,
-- ACPI tables and ISA devices.  Each device is a Lua object in m.dev that a
-- script can inspect (:stats()), replace (m:replace) or trace (m:trace).
--
--   local pc = require "moonvisor.pc"
--   local m <close> = pc.new{ mem = 128 << 20, cpus = 1 }
--   m:boot{ kernel = "k.elf", cmdline = "x=1" }     -- moonvisor.boot: QEMU's protocol choice
--   local r = m:run{ timeout_ms = 5000 }              -- { kind, status, reason, ... }
--   os.exit(r.status)
--
-- pc.new options (all optional):
--   mem       RAM in bytes (default 128 MiB, QEMU's); at least 2 MiB
--   cpus      1..255 CPUs in fw_cfg, the MADT and CMOS; on KVM with the irqchip
--             each is a VCPU (at most 64), the others waiting for the boot
--             CPU's INIT/SIPI as on a PC; elsewhere only the boot CPU runs
--   backend   "kvm" | "soft" (default: mv.default_backend)
--   irqchip   KVM's in-kernel PIC/PIT/IOAPIC/LAPIC (default: on with kvm;
--             the soft backend has none, see moonvisor.dev.irqchip)
--   serial    { output = fn(bytes) | false, input = string | fn } for COM1, or false
--   debug_exit { iobase = 0xf4, iosize = 4 }, or false for none
--   acpi      false: no ACPI tables (fw_cfg and the rest stay)
--   files     { ["opt/name"] = bytes } extra fw_cfg files
--   clock     fn() -> seconds, for the PM timer and the RTC's tests
--   rtc_clock fn() -> os.date("!*t")-style table for the CMOS clock
--
-- Memory map (the one e820 map; Multiboot, Linux, PVH and fw_cfg's
-- etc/e820 all get it):
--   0x00000-0x9fbff   RAM (639 KiB)
--   0x9fc00-0x9ffff   reserved: EBDA (1 KiB; the BDA at 0x40e points to it)
--   0xa0000-0xbffff   not in the map: the VGA window, plain memory here
--   0xc0000-0xdffff   not in the map: option ROM space, plain memory here
--   0xe0000-0xfffff   reserved: the BIOS area: ACPI tables from 0xe0000
--                     (RSDP first), the boot GDT and firmware stub at 0xf0000
--   0x100000-         RAM up to mem, or to 3 GiB when mem >= 3.5 GiB (QEMU's
--                     gigabyte-aligned split; PCI hole above it)
--   0xfec00000        I/O APIC, 0xfee00000 local APIC (in-kernel on KVM)
--   0xfffbc000-0xfffbffff reserved: KVM's TSS and identity map
--   0x100000000-      the rest of RAM when mem >= 3.5 GiB
-- All of 0-0x100000 and 1 MiB up to the split is one host mapping, so a
-- kernel may have segments anywhere in 0xa0000-0xfffff (an ELF kernel linked
-- at 1 MiB has its headers at 0xff000) except over the machine's own data:
-- m.reserved lists that (the BDA, the ACPI tables, the boot page) and the
-- loaders refuse to load over it.
--
-- VCPUs: m.cpu is the boot CPU (made by m:start or m:boot), m.all_cpus
-- every VCPU of the machine (the boot CPU first); m:run runs them all.
--
-- Devices (m.dev): uart (16550, COM1 0x3f8, IRQ 4), cmos (RTC/CMOS 0x70,
-- memory sizes and CPU count as QEMU fills them), i8042 (0x60/0x64, reset),
-- post (0x80), port92 (fast A20, reset), pci (0xcf8/0xcfc, i440FX host
-- bridge; 0xcf9 reset), pm (ACPI PM at 0xb000, GPE0 0xafe0, SCI 9),
-- fw_cfg (0x510/0x511, DMA 0x514), debug_exit (0xf4), irqchip (in-kernel
-- PIC/PIT/IOAPIC/LAPIC on KVM), vga (a view of the text screen).  cmos,
-- i8042, post, port92, pci, pm, fw_cfg and vga are made on first touch (the
-- guest's first access to their ports, or m.dev.NAME read; see "devices
-- made on first touch" below).
-- Accesses no device claims complete with all-ones and are counted in
-- m.unclaimed (m:report() lists them).
local mv = require "moonvisor"
local dev = require "moonvisor.dev"
local acpi = require "moonvisor.acpi"
local irqchip = require "moonvisor.dev.irqchip"

local pc = {}
local Machine = {}
Machine.__index = Machine
pc.Machine = Machine

local KiB, MiB, GiB = 1024, 1 << 20, 1 << 30
pc.EBDA = 0x9fc00
pc.BIOS_AREA = 0xe0000
pc.ACPI_BASE = 0xe0000
pc.BOOT_PAGE = 0xf0000          -- GDT for the 32-bit entries, firmware stub at +0x100
pc.STUB = pc.BOOT_PAGE + 0x100
pc.HANDOVER_POST = 0xfe         -- the stub's POST code as it hands over to the kernel
pc.KVM_RESERVED = { 0xfffbc000, 0x4000 }
pc.MIN_MEM = 2 * MiB
pc.SPLIT = 0xe0000000           -- at or above this much RAM, RAM below 4 GiB stops at 3 GiB
pc.LOWMEM_SPLIT = 0xc0000000
-- Exit statuses of a run (isa-debug-exit's are (v << 1) | 1, always odd).
pc.STATUS = { poweroff = 0, bad_input = 2, stopped = 4, timeout = 124 }

local function hex(n) return ("0x%x"):format(n) end

local function fail(fmt, ...) error(("pc.new: " .. fmt):format(...), 3) end

-- The e820 map for `mem` bytes: below/above 4 GiB per QEMU's pc machine.
function pc.memory_map(mem)
  local below = mem >= pc.SPLIT and pc.LOWMEM_SPLIT or mem
  local above = mem - below
  local e = {
    { addr = 0, size = pc.EBDA, type = 1 },
    { addr = pc.EBDA, size = 0xa0000 - pc.EBDA, type = 2 },
    { addr = pc.BIOS_AREA, size = 0x100000 - pc.BIOS_AREA, type = 2 },
  }
  if below > MiB then e[#e + 1] = { addr = MiB, size = below - MiB, type = 1 } end
  e[#e + 1] = { addr = pc.KVM_RESERVED[1], size = pc.KVM_RESERVED[2], type = 2 }
  if above > 0 then e[#e + 1] = { addr = 1 << 32, size = above, type = 1 } end
  return e, below, above
end

-- {====================================================== building the machine

-- The handler a device trap has while m:trace(fn) is on: the device's
-- handler h, then fn.  Without a tracer the trap has h itself, so a device
-- access costs no call more than a script's own trap (m:trace swaps them).
local function traced(self, name, h)
  return function(e, cpu)
    local v = h(e, cpu)
    local t = self.tracer
    if t then t(name, e, v, cpu) end
    return v
  end
end

-- The handler a device trap has now: h, traced while m:trace is on.
local function device_handler(self, name, h)
  return self.tracer and traced(self, name, h) or h
end

-- A stand-in for the guest handed to devices: the guest's methods, and a
-- trap() that records which device owns the trap, for m:trace and
-- m:exit_stats.  A device made on first touch (below) takes over the
-- stand-in traps that held its ports instead.
local function device_guest(self, name)
  local g = self.g
  return setmetatable({
    trap = function(_, kind, addr, size, h)
      local w = self.making
      if w then
        for _, o in ipairs(w.owners) do
          if o.kind == kind and o.addr == addr and o.size == size and not o.taken then
            o.taken, o.handler = true, h
            o.trap:handler(device_handler(self, name, h))
            return o.trap
          end
        end
        error(("pc: device %s traps %s 0x%x+%d, which none of its stand-ins holds (pc.lua's port list "
               .. "for it and the device disagree)"):format(name, kind, addr, size))
      end
      local t = g:trap(kind, addr, size, device_handler(self, name, h))
      self.trap_owners[#self.trap_owners + 1] = { name = name, kind = kind, addr = addr, size = size, trap = t, handler = h }
      return t
    end,
  }, { __index = function(_, k)
    local f = g[k]
    if type(f) ~= "function" then return f end
    return function(_, ...) return f(g, ...) end
  end })
end

-- {====================================================== devices made on first touch

-- Devices a guest may never touch (the CMOS, the i8042, the PCI host, ...)
-- are made when it first accesses one of their ports, or when a script
-- first reads m.dev.NAME (or iterates m.dev): until then a stand-in trap
-- holds each port range the device traps, made when the device would have
-- been (so trap ids are the same).  The device takes those traps over when
-- it is made: its handler replaces the stand-in's and their counts carry
-- on; the access that made it goes to that handler.  Loading and making
-- the devices a Multiboot kernel never touches was an eighth of its start.
-- A device whose traps and stand-ins differ is an error when it is made;
-- a device that fails to be made keeps waiting (each use tries again).

local make_device   -- below

-- m.dev: the devices made, and those waiting, made when read.
local function device_table(self)
  return setmetatable({}, {
    __index = function(_, name) if self.waiting[name] then return make_device(self, name) end end,
    __pairs = function(t)
      for name in pairs(self.waiting) do make_device(self, name) end
      return next, t, nil
    end,
  })
end

-- Device `name` waits for its first use: ranges are its io port ranges,
-- { { port, count }, ... }, make(g_for_devices) makes it.
local function later(self, name, ranges, make)
  local w = { make = make, owners = {} }
  self.waiting[name] = w
  local function stand_in(e, cpu)
    make_device(self, name)   -- an error leaves the stand-ins as they were
    for _, o in ipairs(w.owners) do
      if e.port >= o.addr and e.port < o.addr + o.size then return o.handler(e, cpu) end
    end
  end
  w.stand_in = stand_in
  for _, r in ipairs(ranges) do
    local t = self.g:trap("io", r[1], r[2], stand_in)
    local o = { name = name, kind = "io", addr = r[1], size = r[2], trap = t, handler = stand_in }
    self.trap_owners[#self.trap_owners + 1] = o
    w.owners[#w.owners + 1] = o
  end
end

function make_device(self, name)
  local w = self.waiting[name]
  if not w then return rawget(self.dev, name) end
  self.waiting[name] = nil
  self.making = w
  local ok, d = pcall(w.make, device_guest(self, name))
  self.making = nil
  for _, o in ipairs(w.owners) do
    if ok and not o.taken then
      ok, d = false, ("pc: device %s left its stand-in io 0x%x+%d (pc.lua's port list for it and the device disagree)")
                     :format(name, o.addr, o.size)
    end
  end
  if not ok then               -- back to waiting, the stand-ins' handlers too
    for _, o in ipairs(w.owners) do
      if o.taken and o.trap:handler() ~= nil then o.trap:handler(device_handler(self, name, w.stand_in)) end
      o.taken, o.handler = nil, w.stand_in
    end
    self.waiting[name] = w
    error(d, 0)
  end
  rawset(self.dev, name, d)
  return d
end

function pc.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then fail("options must be a table, got %s", type(opts)) end
  local mem = opts.mem or 128 * MiB
  if math.type(mem) ~= "integer" or mem < pc.MIN_MEM then
    fail("mem must be at least %d bytes (2 MiB), got %s", pc.MIN_MEM, tostring(mem))
  end
  mem = (mem + 0xfff) & ~0xfff
  local cpus = opts.cpus or 1
  if math.type(cpus) ~= "integer" or cpus < 1 or cpus > 255 then
    fail("cpus must be 1..255, got %s", tostring(cpus))
  end
  for _, k in ipairs{ "clock", "rtc_clock" } do   -- here, not when their device is first touched
    if opts[k] ~= nil and type(opts[k]) ~= "function" then fail("%s must be a function, got %s", k, type(opts[k])) end
  end
  local backend = opts.backend or mv.default_backend
  local in_kernel = opts.irqchip
  if in_kernel == nil then in_kernel = backend == "kvm" end
  local e820, below, above = pc.memory_map(mem)

  local self = setmetatable({
    mem = mem, cpus = cpus, backend = backend, below_4g = below, above_4g = above, e820 = e820,
    events = {}, unclaimed = dev.unclaimed(), reserved = {}, opts = opts, trap_owners = {}, waiting = {},
  }, Machine)
  self.dev = device_table(self)
  local g = mv.guest{ backend = backend, irqchip = in_kernel }
  self.g = g
  self.ram = mv.vmo(below)
  g:map(0, self.ram)
  if above > 0 then
    self.high_ram = mv.vmo(above)
    g:map(1 << 32, self.high_ram)
  end

  -- The firmware's leftovers: BDA pointer to the EBDA, base memory size.
  g:write(0x40e, string.pack("<I2", pc.EBDA >> 4))
  g:write(0x413, string.pack("<I2", pc.EBDA // KiB))
  g:write(pc.EBDA, string.pack("<I2", 1))
  self:_reserve(0x400, 0x100, "the BIOS data area")
  self:_reserve(pc.BOOT_PAGE, 0x1000, "the boot GDT and firmware stub")

  local d = self.dev
  local function stop(what)
    return function(cause, cpu)
      self:_event({ kind = "reset", cause = cause, status = pc.STATUS.stopped,
                    reason = ("the guest reset the machine through %s (%s)"):format(what, cause) }, cpu)
    end
  end
  d.irqchip = irqchip.new(g, { in_kernel = in_kernel })
  local raise = function(line, level) d.irqchip:irq(line, level) end
  if opts.serial ~= false then
    local s = opts.serial or {}
    d.uart = require("moonvisor.dev.uart").new(device_guest(self, "uart"), {
      base = 0x3f8, irq = 4, raise_irq = raise, output = s.output, input = s.input })
    local w = require("moonvisor.panic_watch").new{ on_line = function(w)
      if not self.stopped and w:due() then self:_event(self:_panic_event()) end
    end }
    self.panic_watch = w
    d.uart.tap = w.tap
  end
  later(self, "cmos", { { 0x70, 2 } }, function(dg)
    return require("moonvisor.dev.cmos").new(dg, { mem_size = below, above_4g = above, cpus = cpus, clock = opts.rtc_clock })
  end)
  later(self, "i8042", { { 0x60, 1 }, { 0x64, 1 } }, function(dg)
    return require("moonvisor.dev.i8042").new(dg, { on_reset = stop("the i8042") })
  end)
  later(self, "post", { { 0x80, 1 } }, function(dg)
    return require("moonvisor.dev.misc").new(dg, { pci = false, on_post = function(code, cpu) self:_on_post(code, cpu) end })
  end)
  later(self, "port92", { { 0x92, 1 } }, function(dg)
    return require("moonvisor.dev.port92").new(dg, { on_reset = stop("port 0x92") })
  end)
  later(self, "pci", { { 0xcf8, 4 }, { 0xcfc, 4 } }, function(dg)
    return require("moonvisor.dev.pci_host").new(dg, { on_reset = stop("the reset control register") })
  end)
  local pm_start = (opts.clock or mv.clock)()   -- the PM timer counts from the machine's making
  later(self, "pm", { { 0xb000, 64 }, { 0xafe0, 4 } }, function(dg)
    return require("moonvisor.dev.acpi_pm").new(dg, {
      base = 0xb000, gpe0 = 0xafe0, gpe0_len = 4, sci = 9, raise_irq = raise, clock = opts.clock, start = pm_start,
      on_sleep = function(state, typ, cpu) self:_sleep(state, typ, cpu) end })
  end)
  if opts.debug_exit ~= false then
    local dx = opts.debug_exit or {}
    d.debug_exit = require("moonvisor.dev.debug_exit").new(device_guest(self, "debug_exit"), {
      iobase = dx.iobase or 0xf4, iosize = dx.iosize or 4,
      on_exit = function(value, status, cpu)
        self:_event({ kind = "debug-exit", value = value, status = status & 0xff,
                      reason = ("the guest wrote %s to isa-debug-exit (status %d)"):format(hex(value), status & 0xff) }, cpu)
      end })
  end
  later(self, "vga", {}, function() return require("moonvisor.dev.vga").new(g) end)

  -- ACPI, from this configuration.
  if opts.acpi ~= false then
    self.acpi = acpi.build{
      base = pc.ACPI_BASE, cpus = cpus, lapic_addr = irqchip.LAPIC_ADDR,
      ioapic = { id = 0, addr = irqchip.IOAPIC_ADDR, gsi_base = 0 },
      -- SCI and the PCI interrupt lines are level-triggered, active high (flags 0x000d), as QEMU's
      overrides = { { source = 5, gsi = 5, flags = 0xd }, { source = 9, gsi = 9, flags = 0xd },
                    { source = 10, gsi = 10, flags = 0xd }, { source = 11, gsi = 11, flags = 0xd } },
      pm = { evt = 0xb000, cnt = 0xb004, tmr = 0xb008, gpe0 = 0xafe0, gpe0_len = 4, sci = 9 },
      reset = { port = 0xcf9, value = 0x06 },
    }
    g:write(self.acpi.base, self.acpi.bytes)
    self:_reserve(self.acpi.base, self.acpi.size, "the ACPI tables")
  end

  -- fw_cfg: what QEMU's pc machine puts there before any kernel is loaded
  -- (made now when the script gives files, so that their errors are pc.new's).
  later(self, "fw_cfg", { { 0x510, 2 }, { 0x514, 8 } }, function(dg)
    return require("moonvisor.dev.fw_cfg").pc(dg, { mem = mem, cpus = cpus, e820 = e820, files = opts.files })
  end)
  if opts.files ~= nil then local _ = self.dev.fw_cfg end

  return self
end

function Machine:_reserve(addr, size, what)
  self.reserved[#self.reserved + 1] = { addr = addr, size = size, what = what }
end

-- {====================================================== events

-- A device ended the machine (debug exit, power-off, reset): remember it and
-- make the VCPU's enter return.
function Machine:_event(ev, cpu)
  if ev.kind == "reset" and self.panic_watch and self.panic_watch.panic then ev = self:_panic_event() end
  self.events[#self.events + 1] = ev
  if not self.stopped then self.stopped = ev end
  if self.running_all then self.g:stop()
  elseif cpu then cpu:kick() elseif self.cpu then self.cpu:kick() end
end

-- The kernel panicked (moonvisor.panic_watch saw it on the console).
function Machine:_panic_event()
  return { kind = "panic", status = pc.STATUS.stopped,
           reason = "the guest kernel panicked: " .. self.panic_watch.panic }
end

function Machine:_sleep(state, typ, cpu)
  if state == "S5" then
    self:_event({ kind = "poweroff", status = pc.STATUS.poweroff, reason = "ACPI power-off (S5)" }, cpu)
  elseif state == "S4" then
    self:_event({ kind = "poweroff", status = pc.STATUS.poweroff,
                  reason = "ACPI suspend to disk (S4), which QEMU turns into a power-off" }, cpu)
  elseif state == "S3" then
    self:_event({ kind = "suspend", status = pc.STATUS.stopped,
                  reason = "the guest suspended to RAM (ACPI S3, SLP_TYP 1) and nothing can wake it" }, cpu)
  end
end

-- m:trace(fn): fn(device_name, exit, value, cpu) after each device access
-- (value: what a read returned); m:trace(nil) stops.  Turning it on or off
-- swaps the handlers of the device traps there are (trap:handler), from
-- the next access on; traps a device removed are left out.
function Machine:trace(fn)
  if fn ~= nil and type(fn) ~= "function" and not (getmetatable(fn) or {}).__call then
    error("m:trace: fn must be a function or nil, got " .. type(fn), 2)
  end
  local was = self.tracer ~= nil
  self.tracer = fn
  if was == (fn ~= nil) then return end
  for _, o in ipairs(self.trap_owners) do
    if o.trap:handler() ~= nil then o.trap:handler(device_handler(self, o.name, o.handler)) end
  end
end

-- m:replace(name, factory): removes device `name` and installs
-- factory(g_for_devices, m), which returns the new device object.
function Machine:replace(name, factory)
  local w = self.waiting[name]
  if w then                            -- never made: its stand-ins go
    self.waiting[name] = nil
    for _, o in ipairs(w.owners) do o.trap:remove() end
  else
    local old = rawget(self.dev, name)
    if old and old.remove then old:remove() end
  end
  rawset(self.dev, name, factory and factory(device_guest(self, name), self) or nil)
  return rawget(self.dev, name)
end

-- {====================================================== VCPUs and runs

-- The boot VCPU at `entry` in `mode` with `regs`.  For 32-bit entries on
-- KVM with the irqchip, the firmware stub (moonvisor.dev.irqchip) runs
-- first: it sets up the local APIC, then writes pc.HANDOVER_POST to port
-- 0x80, and that write (from the stub's address only) loads `regs` and
-- `entry` -- so the kernel starts with exactly the registers its protocol
-- gives, and m:run_to_entry() can stop there.
function Machine:start(entry, mode, regs, vcpu_opts)
  local g = self.g
  local o = { mode = mode, entry = entry }
  for k, v in pairs(vcpu_opts or {}) do o[k] = v end
  local stub
  if mode == "protected" then
    o.tables = o.tables or pc.BOOT_PAGE
    o.stack = o.stack or pc.BOOT_PAGE
    if self.dev.irqchip.in_kernel and self.opts.firmware_stub ~= false and self.dev.post then
      g:write(pc.STUB, irqchip.virtual_wire_stub(pc.HANDOVER_POST))
      stub = true
    end
  end
  if stub then
    o.entry = pc.STUB
    self.handover = { at = pc.STUB + irqchip.STUB_HANDOVER, entry = entry, regs = regs }
  end
  local cpu = g:vcpu(o)
  if regs and not stub then cpu:write_state(regs) end
  return self:_set_boot_cpu(cpu)
end

-- cpu is the boot VCPU (VCPU 0): with the in-kernel irqchip the machine's
-- other CPUs become VCPUs 1.. now, waiting for INIT/SIPI from its local APIC.
function Machine:_set_boot_cpu(cpu)
  self.cpu = cpu
  self.all_cpus = { cpu }
  if self.cpus > 1 and self.dev.irqchip.in_kernel then
    for i = 2, self.cpus do self.all_cpus[i] = self.g:vcpu{} end
  end
  self._last_rip = {}
  return cpu
end

-- The stub's POST write: the kernel's registers, and a stop when asked.
function Machine:_on_post(code, cpu)
  local h = self.handover
  if not (h and cpu and code == pc.HANDOVER_POST) then return end
  local rip = cpu.rip                 -- on the out (KVM completes it on re-entry) or after it
  if rip ~= h.at and rip ~= h.at - 2 then return end
  self.handover = nil
  local regs = {}
  for k, v in pairs(h.regs or {}) do regs[k] = v end
  regs.rip = h.entry
  cpu:write_state(regs)
  if self.stop_at_entry then cpu:kick() end
end

-- Runs the firmware stub, when there is one, and stops at the kernel's
-- first instruction (what -S waits for gdb at).  Returns the exit, or nil
-- when the VCPU is at the entry already.
function Machine:run_to_entry()
  if not self.handover then return nil end
  self.stop_at_entry = true
  local e
  repeat
    e = self.cpu:enter{ timeout_ms = 1000 }
  until not self.handover or (e.type ~= "io" and e.type ~= "mem" and e.type ~= "timeout")
  self.stop_at_entry = nil
  return e
end

-- m:boot{ kernel, cmdline, initrd, protocol } -> boot description (moonvisor.boot).
function Machine:boot(opts) return require("moonvisor.boot").boot(self, opts) end

local function linear_byte(g, cpu, back)
  local s = cpu:sregs()
  local pa = require("moonvisor.paging").walk(g, s, s.cs.base + cpu.rip - back)
  if not pa then return nil end
  local ok, b = pcall(g.u8, g, pa)
  return ok and b or nil
end

-- True when every VCPU sits after a hlt with interrupts off and has not
-- moved since the last look: on KVM with the in-kernel irqchip a hlt never
-- leaves the kernel, so this is how the machine sees a guest that stopped
-- for good.
function Machine:_dead_halt()
  local dead = true
  for i, cpu in ipairs(self.all_cpus) do
    local rip = cpu.rip       -- (two registers, not read_state's table of them all)
    local same = self._last_rip[i] == rip
    self._last_rip[i] = rip
    if not same or cpu.rflags & 0x200 ~= 0 or linear_byte(self.g, cpu, 1) ~= 0xf4 then dead = false end
  end
  return dead
end

-- One slice of at most ms milliseconds of every VCPU (guest:run) -> the
-- exit that ended it (a timeout, a kick for a stop) and its VCPU.
function Machine:_run_all(ms)
  self.running_all = true
  local ok, res = pcall(self.g.run, self.g, self.all_cpus, { timeout_ms = ms })
  self.running_all = nil
  if not ok then error(res, 0) end
  if res.reason == "exit" then return res.exit, res.cpu end
  if res.reason == "timeout" then return { type = "timeout" }, self.cpu end
  if res.reason == "halted" then return { type = "hlt" }, self.cpu end
  return { type = "kick" }, self.cpu
end

local function describe(e)
  local parts = {}
  for k, v in pairs(e) do
    if k ~= "type" then parts[#parts + 1] = ("%s=%s"):format(k, math.type(v) == "integer" and hex(v) or tostring(v)) end
  end
  table.sort(parts)
  return table.concat(parts, " ")
end

function Machine:_finish(r, e)
  r.exit = e
  local ok, rip = pcall(function() return self.cpu.rip end)
  r.rip = ok and rip or nil
  if self.dev.uart then self.dev.uart:flush() end
  self.result = r
  return r
end

-- m:run{ timeout_ms, timeout_reason, slice_ms = 100, poll = fn(m), on_unclaimed = fn(exit, cpu) }
-- -> { kind, status, reason, rip, exit }.  Enters the boot VCPU in slices
-- (every VCPU through guest:run when there are several) until something
-- ends the machine:
--   debug-exit  status (value << 1) | 1        poweroff  status 0 (ACPI S5; S4)
--   reset       0xcf9, i8042, port 0x92 (status 4; the runner reboots unless -no-reboot)
--   triple-fault  a shutdown exit (status 4; rebooted as a reset)
--   halt        a hlt nothing can end: interrupts off, or no interrupt source
--               (the soft backend; KVM without the irqchip) (status 4)
--   suspend     ACPI S3 (status 4)          timeout  timeout_ms passed (status 124)
--   panic       the kernel printed "Kernel panic - not syncing" (status 4;
--               moonvisor.panic_watch: at its end line, a reset, or 1 s on)
--   exception, kick, ...   any other exit (status 4)
-- poll runs between slices (the runner's gdb stub); unclaimed io and mem
-- exits are counted in m.unclaimed and the guest goes on.
function Machine:run(opts)
  opts = opts or {}
  local cpu = self.cpu
  if not cpu then error("pc:run: no VCPU: m:boot{ kernel = ... } or m:start(entry, mode) first", 2) end
  local clock = mv.clock
  local deadline = opts.timeout_ms and clock() + opts.timeout_ms / 1000
  local slice = opts.slice_ms or 100
  local u, on = self.unclaimed, opts.on_unclaimed
  local enter_opts = {}
  local w = self.panic_watch
  local several = #self.all_cpus > 1
  while true do
    local t = slice
    if deadline then
      local left = (deadline - clock()) * 1000
      if left <= 0 then
        return self:_finish({ kind = "timeout", status = pc.STATUS.timeout,
                              reason = opts.timeout_reason or ("no end after %d ms"):format(opts.timeout_ms) })
      end
      t = math.min(t, left)
    end
    enter_opts.timeout_ms = math.max(1, math.floor(t))
    local e
    if several then e, cpu = self:_run_all(enter_opts.timeout_ms) else e = cpu:enter(enter_opts) end
    if self.stopped then return self:_finish(self.stopped, e) end
    local ty = e.type
    if ty == "io" or ty == "mem" then
      u:count(e)
      if on then on(e, cpu) end
    elseif ty == "timeout" then
      if opts.poll then opts.poll(self) end
      if self.stopped then return self:_finish(self.stopped, e) end
      if w and w:due() then return self:_finish(self:_panic_event(), e) end
      if self:_dead_halt() then
        return self:_finish({ kind = "halt", status = pc.STATUS.stopped,
                              reason = ("the guest halted with interrupts disabled at %s"):format(hex(self.cpu.rip)) }, e)
      end
    elseif ty == "hlt" then
      local st = cpu:read_state()
      local why = st.rflags & 0x200 == 0 and "with interrupts disabled"
        or (self.backend == "soft" and "waiting for an interrupt, and the soft backend has no interrupt controller to send one"
            or "waiting for an interrupt, and this machine has no in-kernel irqchip")
      return self:_finish({ kind = "halt", status = pc.STATUS.stopped,
                            reason = ("the guest halted %s at %s"):format(why, hex(st.rip)) }, e)
    elseif ty == "shutdown" then
      if w and w.panic then return self:_finish(self:_panic_event(), e) end
      return self:_finish({ kind = "triple-fault", status = pc.STATUS.stopped,
                            reason = "triple fault: the VCPU shut down" }, e)
    elseif ty == "exception" then
      return self:_finish({ kind = "exception", status = pc.STATUS.stopped,
                            reason = ("exception %d at %s (the soft backend does not deliver it to the guest)"):format(
                              e.vector or -1, hex(e.rip or cpu.rip)) }, e)
    elseif ty == "kick" then
      return self:_finish({ kind = "kick", status = pc.STATUS.stopped, reason = "stopped from outside (kick)" }, e)
    else
      return self:_finish({ kind = ty, status = pc.STATUS.stopped,
                            reason = ("the VCPU stopped with a %s exit (%s)"):format(ty, describe(e)) }, e)
    end
  end
end

-- m:step(ms[, opts]) -> nil while the machine goes on after about ms
-- milliseconds, or m:run's result when it ended (moonvisor.console's step).
-- opts: m:run's (timeout_ms and slice_ms are ms).
function Machine:step(ms, opts)
  local o = { timeout_ms = ms, slice_ms = ms }
  for k, v in pairs(opts or {}) do if k ~= "timeout_ms" and k ~= "slice_ms" then o[k] = v end end
  local r = self:run(o)
  if r.kind == "timeout" then self.result = nil return nil end
  return r
end

-- {====================================================== reports

-- m:exit_stats() and m:report(): moonvisor.pc_report, loaded when first asked.
function Machine:exit_stats() return require("moonvisor.pc_report").exit_stats(self) end
function Machine:report() return require("moonvisor.pc_report").report(self) end

function Machine:close()
  if self.dev and self.dev.uart then pcall(self.dev.uart.flush, self.dev.uart) end
  if self.g then self.g:close() end
  self.g = nil
end
Machine.__close = Machine.close

return pc
