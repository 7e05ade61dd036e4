-- pc_spec.lua - moonvisor.pc, the machine: its memory map for small and
-- large RAM (and that every consumer gets the same one), the BDA, fw_cfg's
-- items before and after a boot, the devices as objects (trace, replace),
-- how runs end (isa-debug-exit, ACPI power-off, reset, halt, timeout,
-- unclaimed accesses) and moonvisor.boot's protocol choice.
local H = require "helpers"
local files = require "moonvisor.files"
local pc = require "moonvisor.pc"
local boot = require "moonvisor.boot"
local fwcfg = require "moonvisor.dev.fw_cfg"

local G = "build/guests/"
local K = fwcfg.KEY

local function slurp(p) return assert(files.read(p)) end

-- A machine with 32-bit code at 0x200000 started in protected mode.
local function machine(source, opts)
  opts = opts or {}
  opts.serial = opts.serial or { output = false }
  local m = pc.new(opts)
  m.g:write(0x200000, H.asm("org 0x200000\n" .. source, 32))
  m:start(0x200000, "protected")
  return m
end

describe("moonvisor.pc", function()
  describe("the memory map", function()
    it("is QEMU's pc layout for 128 MiB: low RAM to the EBDA, the BIOS area, RAM from 1 MiB", function()
      local m <close> = pc.new{ mem = 128 << 20 }
      assert.same({
        { addr = 0, size = 0x9fc00, type = 1 },
        { addr = 0x9fc00, size = 0x400, type = 2 },
        { addr = 0xe0000, size = 0x20000, type = 2 },
        { addr = 0x100000, size = 0x7f00000, type = 1 },
        { addr = 0xfffbc000, size = 0x4000, type = 2 },
      }, m.e820)
      assert.same({ 0x8000000, 0 }, { m.below_4g, m.above_4g })
      -- 0xa0000-0xfffff is memory: loaders may put segments there
      assert.same({ { gpa = 0, size = 0x8000000, offset = 0, readonly = false, log_dirty = false } },
                  (function() local t = {} for i, x in ipairs(m.g:mappings()) do t[i] = { gpa = x.gpa, size = x.size,
                    offset = x.offset, readonly = x.readonly, log_dirty = x.log_dirty } end return t end)())
    end)

    it("splits RAM at 3 GiB when there are 3.5 GiB or more, the rest from 4 GiB", function()
      local e820, below, above = pc.memory_map(4 << 30)
      assert.same({ 0xc0000000, 0x40000000 }, { below, above })
      assert.same({ addr = 0x100000, size = 0xc0000000 - 0x100000, type = 1 }, e820[4])
      assert.same({ addr = 0x100000000, size = 0x40000000, type = 1 }, e820[6])
      local _, b2, a2 = pc.memory_map(0xdff00000)
      assert.same({ 0xdff00000, 0 }, { b2, a2 })
      local m <close> = pc.new{ mem = 4 << 30 }
      assert.equals(2, #m.g:mappings())
      assert.equals(4 << 30, string.unpack("<I8", m.dev.fw_cfg:item(K.RAM_SIZE)))
    end)

    it("is the one map fw_cfg's etc/e820 and the legacy E820 item give", function()
      local m <close> = pc.new{ mem = 64 << 20 }
      local parts = {}
      for _, e in ipairs(m.e820) do parts[#parts + 1] = string.pack("<I8I8I4", e.addr, e.size, e.type) end
      assert.equals(table.concat(parts), (m.dev.fw_cfg:file("etc/e820")))
      assert.equals(string.pack("<I4", #m.e820) .. table.concat(parts), m.dev.fw_cfg:item(K.E820_TABLE))
    end)

    it("points the BDA at a 1 KiB EBDA and reports 639 KiB of base memory; CMOS agrees", function()
      local m <close> = pc.new{ mem = 64 << 20, cpus = 2 }
      assert.same({ 0x9fc0, 639, 1 }, { m.g:u16(0x40e), m.g:u16(0x413), m.g:u16(0x9fc00) })
      local c = m.dev.cmos
      assert.equals(640, c:get(0x15) | c:get(0x16) << 8)
      assert.equals(63 * 1024, c:get(0x17) | c:get(0x18) << 8)
      assert.equals(1, c:get(0x5f))
    end)

    it("lists the machine's own data as reserved: the BDA, the boot page, the ACPI tables", function()
      local m <close> = pc.new{}
      assert.same({ addr = 0x400, size = 0x100, what = "the BIOS data area" }, m.reserved[1])
      assert.same({ addr = 0xf0000, size = 0x1000, what = "the boot GDT and firmware stub" }, m.reserved[2])
      assert.same({ addr = 0xe0000, size = m.acpi.size, what = "the ACPI tables" }, m.reserved[3])
    end)

    it("refuses less than 2 MiB and more than 255 CPUs", function()
      assert.has_error(function() pc.new{ mem = 1 << 20 } end, "pc.new: mem must be at least 2097152 bytes (2 MiB), got 1048576")
      assert.has_error(function() pc.new{ cpus = 256 } end, "pc.new: cpus must be 1..255, got 256")
    end)
  end)

  describe("fw_cfg", function()
    it("has QEMU's machine items before any boot", function()
      local m <close> = pc.new{ mem = 32 << 20, cpus = 3 }
      local fw = m.dev.fw_cfg
      assert.equals(string.pack("<I2", 3), fw:item(K.NB_CPUS))
      assert.equals(string.pack("<I2", 3), fw:item(K.MAX_CPUS))
      assert.equals(string.pack("<I8", 32 << 20), fw:item(K.RAM_SIZE))
      assert.equals(string.pack("<I2", 1), fw:item(K.NOGRAPHIC))
      assert.equals(("\0"):rep(16), fw:item(K.UUID))
      assert.equals(("\0"):rep(8 * 4), fw:item(K.NUMA))
      assert.equals(string.pack("<I4", 0), fw:item(K.IRQ0_OVERRIDE))
      assert.same({ "etc/boot-fail-wait", "etc/e820" }, { fw:files()[1].name, fw:files()[2].name })
      assert.equals(string.pack("<i4", -1), (fw:file("etc/boot-fail-wait")))
    end)

    it("has the kernel, command line and initrd items after a boot, and the files given", function()
      local m <close> = pc.new{ mem = 32 << 20, files = { ["opt/moonvisor/x"] = "hi" } }
      local b = m:boot{ kernel = G .. "pctest.elf", cmdline = "a b", initrd = "examples/guests/mbmodule.txt x" }
      local fw = m.dev.fw_cfg
      local k = slurp(G .. "pctest.elf")
      assert.equals(k, fw:item(K.KERNEL_DATA))
      assert.equals(string.pack("<I4", #k), fw:item(K.KERNEL_SIZE))
      assert.equals(string.pack("<I4", 0xff000), fw:item(K.KERNEL_ADDR))
      assert.equals(string.pack("<I4", b.entry), fw:item(K.KERNEL_ENTRY))
      assert.equals(G .. "pctest.elf a b\0", fw:item(K.CMDLINE_DATA))
      assert.equals(string.pack("<I4", #(G .. "pctest.elf a b") + 1), fw:item(K.CMDLINE_SIZE))
      local cmd = G .. "pctest.elf a b\0"
      assert.equals(cmd, m.g:read(string.unpack("<I4", fw:item(K.CMDLINE_ADDR)), #cmd))
      assert.equals(slurp("examples/guests/mbmodule.txt"), fw:item(K.INITRD_DATA))
      assert.equals(fw:item(K.INITRD_DATA), m.g:read(string.unpack("<I4", fw:item(K.INITRD_ADDR)), #fw:item(K.INITRD_DATA)))
      assert.equals("hi", (fw:file("opt/moonvisor/x")))
    end)
  end)

  describe("devices", function()
    it("are Lua objects in m.dev", function()
      local m <close> = pc.new{}
      local names = {}
      for k in pairs(m.dev) do names[#names + 1] = k end
      table.sort(names)
      assert.same({ "cmos", "debug_exit", "fw_cfg", "i8042", "irqchip", "pci", "pm", "port92", "post", "uart", "vga" }, names)
      assert.equals(H.kvm, m.dev.irqchip.in_kernel)
      assert.equals(0x3f8, m.dev.uart.base)
    end)

    it("can be traced: every access, with the value a read got", function()
      local m <close> = machine([[
        mov dx, 0x3fd
        in al, dx
        mov al, 0x41
        mov dx, 0x3f8
        out dx, al
        mov al, 3
        out 0xf4, al
        hlt]])
      local seen = {}
      m:trace(function(name, e, v) seen[#seen + 1] = ("%s %s %x %s"):format(name, e.write and "w" or "r", e.port, tostring(v)) end)
      local r = m:run{ timeout_ms = 5000 }
      -- on kvm the firmware stub runs first and hands over with a POST write (moonvisor.dev.irqchip)
      if H.kvm then assert.equals("post w 80 nil", table.remove(seen, 1)) end
      assert.same({ "uart r 3fd 96", "uart w 3f8 nil", "debug_exit w f4 nil" }, seen)
      assert.same({ "debug-exit", 7, 3 }, { r.kind, r.status, m.stopped.value })
    end)

    it("stops tracing from the next access when the tracer turns itself off", function()
      local m <close> = machine([[
        mov dx, 0x3fd
        in al, dx
        in al, dx
        in al, dx
        mov al, 5
        out 0xf4, al
        hlt]])
      local seen = {}
      m:trace(function(name, e, v)
        if name ~= "uart" then return end
        seen[#seen + 1] = ("%x %s"):format(e.port, tostring(v))
        if #seen == 2 then m:trace(nil) end
      end)
      local r = m:run{ timeout_ms = 5000 }
      assert.same({ "3fd 96", "3fd 96" }, seen)
      assert.same({ "debug-exit", 11 }, { r.kind, r.status })
    end)

    it("traces a device put in while tracing is on, and refuses a tracer that is not callable", function()
      local m <close> = machine("mov al, 9\nout 0xf4, al\nhlt")
      local seen = {}
      m:trace(function() end)
      m:replace("debug_exit", function(g) return { trap = g:trap("io", 0xf4, 1, function() end),
                                                    remove = function() end } end)
      m:trace(nil)   -- the removed debug_exit trap is left alone
      m:trace(function(name, e) if name == "debug_exit" then seen[#seen + 1] = e.data end end)
      local r = m:run{ timeout_ms = 5000 }
      assert.same({ 9 }, seen)
      assert.equals("halt", r.kind)
      local ok, err = pcall(m.trace, m, 42)
      assert.is_false(ok)
      assert.matches("m:trace: fn must be a function or nil, got number", err, 1, true)
    end)

    it("can be replaced by the script's own", function()
      local m <close> = machine("mov al, 9\nout 0xf4, al\nhlt")
      local got
      m:replace("debug_exit", function(g) return { trap = g:trap("io", 0xf4, 1, function(e) got = e.data end),
                                                    remove = function() end } end)
      local r = m:run{ timeout_ms = 5000 }
      assert.equals(9, got)
      assert.equals("halt", r.kind)
    end)
  end)

  describe("devices made on first touch", function()
    local LAZY = { "cmos", "fw_cfg", "i8042", "pci", "pm", "port92", "post", "vga" }
    local function made(m)
      local t = {}
      for _, n in ipairs(LAZY) do if rawget(m.dev, n) then t[#t + 1] = n end end
      return t
    end
    local function io_traps(m)
      local t = {}
      for _, x in ipairs(m.cpu and m.cpu:stats().traps or {}) do
        if x.kind == "io" then t[#t + 1] = ("0x%x+%d"):format(x.addr, x.size) end
      end
      table.sort(t)
      return t
    end

    it("wait for the guest's first access to their ports, which the device then answers", function()
      local m <close> = machine([[
        mov al, 0x15
        out 0x70, al
        in al, 0x71          ; CMOS 0x15: base memory in KiB, low byte (640 = 0x280)
        out 0xf4, al
        hlt]])
      local waiting = made(m)
      if H.kvm then assert.same({ "post" }, waiting) else assert.same({}, waiting) end   -- kvm: m:start's firmware stub
      local seen = {}
      m:trace(function(name, e, v) if name == "cmos" then seen[#seen + 1] = ("%s %x %s"):format(e.write and "w" or "r", e.port, tostring(v)) end end)
      local r = m:run{ timeout_ms = 5000 }
      assert.same({ "debug-exit", (0x80 << 1 | 1) & 0xff }, { r.kind, r.status })
      assert.same({ "w 70 nil", "r 71 128" }, seen)   -- the access that made it is the device's, traced as such
      assert.is_not_nil(rawget(m.dev, "cmos"))
      assert.is_nil(rawget(m.dev, "i8042"))
      local by = {}
      for _, d in ipairs(m:exit_stats().devices) do by[d.name] = d.exits end
      assert.equals(2, by.cmos)   -- the stand-in's count carried on
    end)

    it("are made when a script reads m.dev.NAME, and all of them when it iterates m.dev", function()
      local m <close> = pc.new{ serial = { output = false } }
      assert.same({}, made(m))
      assert.equals(0x1237, m.dev.pci:config_read(0, 0, 0, 2, 2))   -- the i440FX host bridge's device id
      assert.same({ "pci" }, made(m))
      for _ in pairs(m.dev) do end
      assert.same(LAZY, made(m))
    end)

    it("hold exactly the ports the devices trap: the stand-ins' traps become the devices'", function()
      local m <close> = machine("hlt")
      local before = io_traps(m)
      for _ in pairs(m.dev) do end   -- every device made: each takes over its stand-ins or it is an error
      assert.same(before, io_traps(m))
      for _, x in ipairs(m.cpu:stats().traps) do
        for _, o in ipairs(m.trap_owners) do
          if o.kind == x.kind and o.addr == x.addr and o.size == x.size and o.trap:handler() then
            assert.equals(o.handler, o.trap:handler(), ("%s 0x%x"):format(o.name, o.addr))
          end
        end
      end
    end)

    it("waiting, can be replaced: the stand-ins go, the replacement gets the ports, the device is never made", function()
      local m <close> = machine("mov al, 7\nout 0x92, al\nmov al, 1\nout 0xf4, al\nhlt")
      local got
      local p = m:replace("port92", function(g) return { trap = g:trap("io", 0x92, 1, function(e) got = e.data end) } end)
      local r = m:run{ timeout_ms = 5000 }
      assert.equals(7, got)
      assert.equals("debug-exit", r.kind)
      assert.equals(p, m.dev.port92)
      assert.is_nil(m.dev.port92.a20)   -- the replacement, not the model
    end)

    it("but fw_cfg is made at once when the script gives files, so that a bad one fails pc.new", function()
      local m <close> = pc.new{ serial = { output = false }, files = { ["opt/x"] = "y" } }
      assert.is_not_nil(rawget(m.dev, "fw_cfg"))
      assert.equals("y", (m.dev.fw_cfg:file("opt/x")))
      local ok, err = pcall(pc.new, { files = { ["opt/x"] = 42 } })
      assert.is_false(ok)
      assert.matches("fw_cfg:add_file: opt/x: data must be a string, got number", err, 1, true)
    end)

    it("that fail to be made keep waiting: the access fails with the error, a later use makes them", function()
      local m <close> = machine("in al, 0x60\nmov al, 3\nout 0xf4, al\nhlt")
      local real = package.loaded["moonvisor.dev.i8042"]
      package.loaded["moonvisor.dev.i8042"] = { new = function() error("i8042: broken on purpose", 0) end }
      local ok, err = pcall(m.run, m, { timeout_ms = 5000 })
      local ok2, err2 = pcall(function() return m.dev.i8042 end)
      package.loaded["moonvisor.dev.i8042"] = real
      assert.is_false(ok)
      assert.matches("io handler for port 0x60 (in, 1 bytes) failed: i8042: broken on purpose", err, 1, true)
      assert.same({ false, "i8042: broken on purpose" }, { ok2, err2 })
      assert.is_nil(rawget(m.dev, "i8042"))
      local r = m:run{ timeout_ms = 5000 }   -- the failed in read all ones; the guest goes on
      assert.same({ "debug-exit", 7 }, { r.kind, r.status })
      assert.is_nil(rawget(m.dev, "i8042"))
      assert.equals(0x03, m.dev.i8042.outport)   -- still waiting: this read makes it
    end)

    it("are checked where pc.new takes their options: clock and rtc_clock must be functions", function()
      assert.has_error(function() pc.new{ clock = 5 } end, "pc.new: clock must be a function, got number")
      assert.has_error(function() pc.new{ rtc_clock = {} } end, "pc.new: rtc_clock must be a function, got table")
    end)

    it("keep their time: the PM timer counts from the machine's making, not from its first touch", function()
      local now = 100
      local m <close> = pc.new{ serial = { output = false }, clock = function() return now end }
      now = 101
      assert.same({}, made(m))
      assert.equals(math.floor(1 * require("moonvisor.dev.acpi_pm").FREQ) & 0xffffff, m.dev.pm:timer())
    end)
  end)

  describe("runs", function()
    it("end with (v << 1) | 1 when the guest writes v to isa-debug-exit", function()
      local m <close> = machine("mov al, 0x20\nout 0xf4, al\njmp $")
      local r = m:run{ timeout_ms = 5000 }
      assert.same({ "debug-exit", 65, "the guest wrote 0x20 to isa-debug-exit (status 65)" }, { r.kind, r.status, r.reason })
    end)

    it("end with status 0 on an ACPI power-off (SLP_TYP 0, SLP_EN to PM1a control)", function()
      local m <close> = machine("mov dx, 0xb004\nmov ax, 0x2000\nout dx, ax\njmp $")
      local r = m:run{ timeout_ms = 5000 }
      assert.same({ "poweroff", 0, "ACPI power-off (S5)" }, { r.kind, r.status, r.reason })
    end)

    it("end on a reset through 0xcf9, the i8042 or port 0x92, with status 4", function()
      for _, c in ipairs{ { "mov al, 6\nmov dx, 0xcf9\nout dx, al", "the reset control register (0xcf9)" },
                          { "mov al, 0xfe\nout 0x64, al", "the i8042 (0xfe)" },
                          { "mov al, 1\nout 0x92, al", "port 0x92 (0x92)" } } do
        local m <close> = machine(c[1] .. "\njmp $")
        local r = m:run{ timeout_ms = 5000 }
        assert.same({ "reset", 4, "the guest reset the machine through " .. c[2] }, { r.kind, r.status, r.reason })
      end
    end)

    it("end when the guest halts with interrupts off, and say so", function()
      local m <close> = machine("cli\nhlt\njmp $")
      local r = m:run{ timeout_ms = 10000, slice_ms = 20 }
      assert.same({ "halt", 4 }, { r.kind, r.status })
      assert.equals("the guest halted with interrupts disabled at 0x200002", r.reason)
    end)

    it("#kvm run every CPU: the boot CPU starts the other with INIT/SIPI, whose debug exit ends the run", function()
      -- VCPU 1 waits for a SIPI (vector 0x10: real mode at 0x10000) and writes 0x21 to isa-debug-exit
      local m <close> = machine([[
        mov dword [0xfee00310], 0x01000000  ; ICR destination: APIC id 1
        mov dword [0xfee00300], 0x00004500  ; INIT
        mov dword [0xfee00300], 0x00004610  ; start-up, vector 0x10
        jmp $]], { cpus = 2 })
      m.g:write(0x10000, H.asm("mov al, 0x21\nout 0xf4, al\njmp $", 16))
      assert.equals(2, #m.all_cpus)
      local by
      m:trace(function(name, _, _, cpu) if name == "debug_exit" then by = cpu.id end end)
      local r = m:run{ timeout_ms = 20000 }
      assert.same({ "debug-exit", 67, 1 }, { r.kind, r.status, by })
      local counted = {}
      for _, d in ipairs(m:exit_stats().devices) do counted[d.name] = d.exits end
      assert.equals(1, counted.debug_exit)     -- the guest's trap counts, once, not once per VCPU
    end)

    it("run only the boot CPU where there is no in-kernel irqchip (the soft backend), though cpus describes more", function()
      local m <close> = machine("mov al, 0x20\nout 0xf4, al\njmp $", { cpus = 4, irqchip = false })
      assert.equals(1, #m.all_cpus)
      assert.equals(string.pack("<I2", 4), m.dev.fw_cfg:item(K.NB_CPUS))
      assert.equals(65, m:run{ timeout_ms = 5000 }.status)
    end)

    local PANIC = 'db "Kernel panic - not syncing: test", 13, 10'
    local function printer(text)
      return ([[
        mov esi, msg
        mov ecx, msg_end - msg
        mov dx, 0x3f8
      l:lodsb
        out dx, al
        loop l
        jmp $
      msg: %s
      msg_end:]]):format(text)
    end

    it("end at a kernel panic's end line, with the panic's text and status 4", function()
      local m <close> = machine(printer(PANIC .. '\ndb "stack", 10, "---[ end Kernel panic - not syncing: test ]---", 10, "more", 10'))
      local r = m:run{ timeout_ms = 20000 }
      assert.same({ "panic", 4, "the guest kernel panicked: Kernel panic - not syncing: test" }, { r.kind, r.status, r.reason })
      -- stopped at the end line's newline: "more" was never sent
      local upto = "Kernel panic - not syncing: test\r\nstack\n---[ end Kernel panic - not syncing: test ]---\n"
      assert.equals(#upto, m.dev.uart:stats().tx)
    end)

    it("end PANIC_GRACE after a kernel panic line that no end line follows", function()
      local m <close> = machine(printer(PANIC))
      local t0 = require("moonvisor").clock()
      local r = m:run{ timeout_ms = 20000, slice_ms = 50 }
      assert.same({ "panic", 4 }, { r.kind, r.status })
      assert.is_true(require("moonvisor").clock() - t0 < 10)
    end)

    it("end after timeout_ms with status 124", function()
      local m <close> = machine("jmp $")
      local r = m:run{ timeout_ms = 200, slice_ms = 50 }
      assert.same({ "timeout", 124, "no end after 200 ms" }, { r.kind, r.status, r.reason })
    end)

    it("count accesses no device claims and go on", function()
      local m <close> = machine([[
        mov dx, 0x2f8
        in al, dx
        out dx, al
        mov eax, [0xfed00000]
        mov al, 0
        out 0xf4, al
        hlt]])
      local r = m:run{ timeout_ms = 5000 }
      assert.equals(1, r.status)
      assert.same({ 2, 1, 1 }, { m.unclaimed.io[0x2f8], m.unclaimed.mem[0xfed00000], m.unclaimed.writes })
      assert.equals("unclaimed: 3 accesses (2 reads, 1 writes)", m:report()[#m:report() - 2])
    end)
  end)

  describe("boot", function()
    it("chooses the protocol as QEMU: Linux by HdrS, then Multiboot, then a PVH note", function()
      assert.equals("linux", boot.detect(slurp(G .. "bzImage")))
      assert.equals("multiboot", boot.detect(slurp(G .. "pctest.elf")))
      assert.equals("multiboot", boot.detect(slurp(G .. "multiboot_aout.bin")))
      assert.equals("pvh", boot.detect(slurp(G .. "pctest_pvh.elf")))
      assert.same({ nil, "an ELF file with neither a Multiboot header in its first 8 KiB nor a PVH entry note (Xen, type 18)" },
                  { boot.detect(slurp(G .. "elf32.elf")) })
      assert.same({ nil, "no recognised header: not a Linux kernel (no \"HdrS\" at 0x202), no Multiboot header in the first 8 KiB, not an ELF file" },
                  { boot.detect(slurp(G .. "hello.bin")) })
      assert.same({ nil, "empty file" }, { boot.detect("") })
    end)

    it("splits QEMU's -initrd module list: commas, \",,\" for a comma, the path first", function()
      assert.same({ { path = "a.bin", cmdline = "a.bin x=1" }, { path = "b,c", cmdline = "b,c" } },
                  boot.module_list("a.bin x=1,b,,c"))
    end)

    it("loads a kernel with its ELF headers at 0xff000 and one linked at 0x8000, the info after each", function()
      local m <close> = pc.new{}
      local b = m:boot{ kernel = G .. "pctest.elf" }
      assert.equals(0xff000, b.image.segments[1].addr)
      assert.is_true(b.image.info_addr >= b.image.kernel_end)
      local m2 <close> = pc.new{}
      local b2 = m2:boot{ kernel = G .. "pctest_low.elf" }
      assert.equals(0x7000, b2.image.segments[1].addr)
      assert.is_true(b2.image.info_addr >= b2.image.kernel_end and b2.image.info_addr < 0x20000)
    end)

    it("gives a Linux kernel the machine's map and the RSDP in the zero page", function()
      local m <close> = pc.new{ mem = 64 << 20 }
      local b = m:boot{ kernel = G .. "bzImage", cmdline = "console=ttyS0" }
      local zp = b.image.zero_page
      assert.equals(#m.e820, m.g:u8(zp + 0x1e8))
      for i, e in ipairs(m.e820) do
        local a, n, t = string.unpack("<I8I8I4", m.g:read(zp + 0x2d0 + 20 * (i - 1), 20))
        assert.same({ e.addr, e.size, e.type }, { a, n, t })
      end
      assert.equals(0xe0000, m.g:u64(zp + 0x70))
      assert.equals(m.cpu, b.cpu)
    end)

    it("gives a PVH kernel the machine's map, the RSDP and its command line in the start info", function()
      local m <close> = pc.new{ mem = 64 << 20 }
      local b = m:boot{ kernel = G .. "pctest_pvh.elf", cmdline = "x y" }
      local si = b.image.start_info
      assert.equals(0x336ec578, m.g:u32(si))
      assert.equals(0xe0000, m.g:u64(si + 32))
      assert.equals("x y\0", m.g:read(m.g:u64(si + 24), 4))
      assert.equals(#m.e820, m.g:u32(si + 48))
      local map = m.g:u64(si + 40)
      for i, e in ipairs(m.e820) do
        local a, n, t = string.unpack("<I8I8I4", m.g:read(map + 24 * (i - 1), 20))
        assert.same({ e.addr, e.size, e.type }, { a, n, t })
      end
      m:run_to_entry()
      assert.same({ si, b.entry }, { b.cpu:read_state().rbx, b.cpu.rip })
    end)

    it("starts a 32-bit kernel behind the firmware stub with the in-kernel irqchip (kvm), at its entry otherwise", function()
      local m <close> = pc.new{ mem = 64 << 20 }
      local b = m:boot{ kernel = G .. "pctest.elf" }
      if H.kvm then
        assert.equals(pc.STUB, b.cpu.rip)
        assert.equals("kick", m:run_to_entry().type)
        assert.same({ 0xfe }, m.dev.post:post_codes())
      else   -- the soft backend has no local APIC to set up
        assert.is_nil(m:run_to_entry())
      end
      local st = b.cpu:read_state()
      assert.same({ b.entry, 0x2BADB002, b.image.info_addr }, { st.rip, st.rax, st.rbx })
    end)

    it("refuses a kernel over the machine's data, naming the file and what it overlaps", function()
      -- an a.out-kludge Multiboot kernel loaded at 0xe0000, where the ACPI tables are
      local hdr = string.pack("<I4I4I4I4I4I4I4I4", 0x1BADB002, 0x10003, (-(0x1BADB002 + 0x10003)) & 0xffffffff,
                              0xe0000, 0xe0000, 0, 0, 0xe0020)
      local path = os.tmpname()
      local f = io.open(path, "wb")
      f:write(hdr .. ("\x90"):rep(0x100))
      f:close()
      local m <close> = pc.new{}
      local ok, err = pcall(m.boot, m, { kernel = path })
      os.remove(path)
      assert.is_false(ok)
      assert.equals(("load.multiboot: %s: segment 0xe0000+0x120 overlaps the ACPI tables 0xe0000+0x%x"):format(path, m.acpi.size), err)
    end)
  end)
end)
