-- run_spec.lua - `moonvisor run`, the kernel runner: QEMU's options, the
-- kernels built for `qemu -kernel` (build/guests/pctest*.elf from
-- examples/guests/pctest.c, bzImage, mbhello.elf, multiboot_aout.bin) and
-- every exit status: isa-debug-exit's value, 0 on ACPI power-off, 4 with a
-- reason when the guest stops otherwise, 124 on --timeout, 2 with the file
-- and the reason for bad input.
local H = require "helpers"
local files = require "moonvisor.files"
local runner = require "moonvisor.runner"

local exe = os.getenv("MOONVISOR_EXE") or "build/moonvisor"
local G = "build/guests/"

local slurp = files.read

-- moonvisor run ARGS: stdout, stderr, status.
local function run(args)
  local out, err = os.tmpname(), os.tmpname()
  local ok, _, code = os.execute(("MOONVISOR_BACKEND=%s timeout 120 %s run %s >%s 2>%s </dev/null"):format(
    H.backend, exe, args, out, err))
  local o, e = slurp(out):gsub("\r\n", "\n"), slurp(err)
  os.remove(out)
  os.remove(err)
  return o, e, ok and 0 or code
end

local tmpfile = H.tmpfile

describe("moonvisor run", function()
  describe("boots kernels built for qemu -kernel", function()
    it("a Multiboot ELF linked the ordinary way (headers in a segment at 0xff000): every check passes, status 65", function()
      local out, err, code = run("-kernel " .. G .. "pctest.elf -append 'a b'")
      assert.equals(65, code, err)                       -- isa-debug-exit 0x20: (0x20 << 1) | 1
      assert.equals("pctest: booted by Multiboot, kernel at 0x1003b0, command line: build/guests/pctest.elf a b",
                    out:match("^[^\n]*"))
      assert.matches("\npctest: all checks passed\n", out)
      assert.not_matches("FAIL", out)
      assert.equals("", err)
    end)

    it("the same kernel linked at 0x8000, below where QEMU puts its Multiboot info", function()
      local out, err, code = run("-kernel " .. G .. "pctest_low.elf")
      assert.equals(65, code, err)
      assert.matches("kernel at 0x83b0, command line: build/guests/pctest_low.elf \n", out)
    end)

    it("an ELF kernel with a PVH note, through PVH", function()
      local out, err, code = run("-kernel " .. G .. "pctest_pvh.elf -append 'x=1'")
      assert.equals(65, code, err)
      assert.matches("^pctest: booted by PVH, kernel at 0x1003b0, command line: x=1\n", out)
    end)

    it("with -m and -smp: fw_cfg, the MADT and the memory map agree", function()
      local out, err, code = run("-kernel " .. G .. "pctest.elf -m 256 -smp 4")
      assert.equals(65, code, err)
      assert.matches("     fw_cfg: 4 CPUs, RAM 0x10000000\n", out, 1, true)
      assert.matches("     acpi: MADT lists 4 local APICs, I/O APIC at 0xfec00000\n", out, 1, true)
      assert.matches("     map: 0x100000 0xff00000 1\n", out, 1, true)
    end)

    it("-m takes QEMU's suffixes; RAM above 3.5 GiB is split at 3 GiB and continues at 4 GiB", function()
      local out, err, code = run("-kernel " .. G .. "pctest.elf -m 3584")
      assert.equals(65, code, err)
      assert.matches("     map: 0x100000 0xbff00000 1\n", out, 1, true)
      assert.matches("     map: 0x100000000 0x20000000 1\n", out, 1, true)
    end)

    it("a Linux bzImage (the boot protocol test kernel): its own status 1 (it writes 0)", function()
      local out, err, code = run("-kernel " .. G .. "bzImage -append 'console=ttyS0'")
      assert.equals(1, code, err)
      assert.matches("bzkernel: entered through the 64%-bit boot protocol\n", out)
      assert.matches("info e820: 0x0000e0000%-0x0000fffff type 2\n", out)
      assert.matches("bzkernel: %d+ checks, 0 failed\n", out)
    end)

    it("Multiboot modules from -initrd as QEMU takes them: \"file args,file args\"", function()
      local out, err, code = run("-kernel " .. G .. "mbhello.elf -append hi -initrd 'examples/guests/mbmodule.txt greeting'")
      assert.equals(33, code, err)
      assert.equals("mbhello: booted by moonvisor\ncommand line: build/guests/mbhello.elf hi\n" ..
                    "module examples/guests/mbmodule.txt greeting: the contents of a Multiboot module\n", out)
    end)
  end)

  describe("ends with", function()
    it("status 0 and no message on an ACPI power-off", function()
      local out, err, code = run("-kernel " .. G .. "pctest.elf -append poweroff")
      assert.equals(0, code, err)
      assert.matches("pctest: all checks passed", out)
      assert.equals("", err)
    end)

    it("status 4 and the reason on a reset with -no-reboot", function()
      local _, err, code = run("-kernel " .. G .. "pctest.elf -append reset -no-reboot")
      assert.equals(4, code)
      assert.equals("moonvisor run: the guest reset the machine through the reset control register (0xcf9)\n", err)
    end)

    it("a reboot on a reset without -no-reboot, as QEMU: the kernel runs again", function()
      local out, err, code = run("-kernel " .. G .. "pctest.elf -append reset --timeout 3000")
      assert.equals(124, code, err)
      local boots = select(2, out:gsub("pctest: booted by", ""))
      assert.is_true(boots >= 2, out)
      assert.matches("moonvisor run: no end after 3000 ms %(%-%-timeout%)\n$", err)
    end)

    it("status 4 when the guest halts with interrupts off", function()
      local _, err, code = run("-kernel " .. G .. "pctest.elf -append halt")
      assert.equals(4, code)
      assert.matches("^moonvisor run: the guest halted with interrupts disabled at 0x%x+\n$", err)
    end)

    it("status 4 on a triple fault with -no-reboot (soft: the exception the backend cannot deliver)", function()
      local _, err, code = run("-kernel " .. G .. "pctest.elf -append fault -no-reboot")
      assert.equals(4, code)
      if H.kvm then
        assert.equals("moonvisor run: triple fault: the VCPU shut down\n", err)
      else   -- Unicorn reports exceptions instead of running the guest's IDT (README, Backends)
        assert.matches("^moonvisor run: exception 3 at 0x%x+ %(the soft backend does not deliver it to the guest%)\n$", err)
      end
    end)

    it("interrupts through the in-kernel irqchip on kvm; on soft, which has none, a halt nothing can end", function()
      local out, err, code = run("-kernel " .. G .. "pctest.elf -append irq")
      if H.kvm then
        assert.equals(65, code, ("stderr: %s\nstdout: %s"):format(err, out))
        assert.matches("ok   irq: UART THR-empty interrupt through the 8259 (IRQ 4)\n", out, 1, true)
        assert.matches("ok   irq: UART THR-empty interrupt through the I/O APIC (pin 4)\n", out, 1, true)
        assert.matches("ok   irq: PIT ticks through the I/O APIC pin the MADT gives IRQ 0\n", out, 1, true)
      else
        -- the soft backend has no interrupt controller: the kernel's sti; hlt waits for ever
        assert.equals(4, code)
        assert.matches("^moonvisor run: the guest halted waiting for an interrupt, and the soft backend has no " ..
                       "interrupt controller to send one at 0x%x+\n$", err)
      end
    end)

    it("status 124 after --timeout", function()
      local _, err, code = run("-kernel " .. G .. "pctest.elf -append spin --timeout 300")
      assert.equals(124, code)
      assert.equals("moonvisor run: no end after 300 ms (--timeout)\n", err)
    end)

    it("-device isa-debug-exit's QEMU defaults (0x501): the kernel's 0xf4 is unclaimed, counted by --report", function()
      local _, err, code = run("-kernel " .. G .. "pctest.elf -device isa-debug-exit --report")
      assert.equals(4, code)
      assert.matches("moonvisor run: debug_exit writes=0\n", err, 1, true)
      assert.matches("moonvisor run:   io 0xf4: 1\n", err, 1, true)
      assert.matches("moonvisor run: the guest halted with interrupts disabled", err, 1, true)
      local out2, err2, code2 = run("-kernel " .. G .. "pctest.elf -device isa-debug-exit,iobase=0xf4,iosize=1")
      assert.equals(65, code2, err2)
      assert.matches("all checks passed", out2)
    end)
  end)

  describe("COM1", function()
    it("goes to a file with -serial file:PATH, nowhere with -serial null", function()
      local path = os.tmpname()
      local out, err, code = run(("-kernel %smbhello.elf -serial file:%s"):format(G, path))
      assert.equals(33, code, err)
      assert.equals("", out)
      assert.equals("mbhello: booted by moonvisor\ncommand line: build/guests/mbhello.elf \n", slurp(path))
      os.remove(path)
      out, err, code = run("-kernel " .. G .. "mbhello.elf -serial null")
      assert.same({ 33, "" }, { code, out })
    end)

    it("takes a piped stdin once the driver has kept the receive interrupt on from one poll to the next", function()
      -- Linux's probe sets every IER bit for a moment and its start-up then
      -- reads the receiver once: a byte fed at that moment would be lost.
      local input = tmpfile("abc")
      local script = [[
local mv = require "moonvisor"
local u = require("moonvisor.dev.uart").new(mv.guest{ backend = os.getenv("MOONVISOR_BACKEND") }, { output = false })
local feed = require("moonvisor.runner").stdin_feeder{ dev = { uart = u } }
local function received()
  local t = {}
  while u:read(0x3fd) & 1 == 1 do t[#t + 1] = string.char(u:read(0x3f8)) end
  return "[" .. table.concat(t) .. "]"
end
u:write(0x3f9, 0x0f) feed() u:write(0x3f9, 0)   -- the probe's moment
io.write(received())
feed()                                          -- the boot goes on
u:write(0x3f9, 0x05) feed()                     -- the driver started
io.write(received())
feed()
io.write(received())
]]
      local path = tmpfile(script)
      local out, code = H.sh(("MOONVISOR_BACKEND=%s %s %s <%s"):format(H.backend, exe, path, input))
      os.remove(input)
      os.remove(path)
      assert.same({ "[][][abc]", 0 }, { out, code })
    end)
  end)

  describe("refuses bad input with status 2, naming the file and the reason", function()
    local cases = {
      { "", "moonvisor run: no kernel: -kernel FILE is required\n" },
      { "-kernel /nonexistent", "moonvisor run: /nonexistent: No such file or directory\n" },
      { "-kernel " .. G .. "hello.bin", "moonvisor run: boot: build/guests/hello.bin: no recognised header: not a Linux " ..
        "kernel (no \"HdrS\" at 0x202), no Multiboot header in the first 8 KiB, not an ELF file\n" },
      { "-kernel " .. G .. "elf32.elf", "moonvisor run: boot: build/guests/elf32.elf: an ELF file with neither a " ..
        "Multiboot header in its first 8 KiB nor a PVH entry note (Xen, type 18)\n" },
      { "-kernel " .. G .. "bzImage -append " .. ("x"):rep(3000), "moonvisor run: linux.boot: build/guests/bzImage: " ..
        "command line of 3000 bytes is longer than the kernel's cmdline_size 2047\n" },
      { "-kernel " .. G .. "pctest.elf -m 1", "moonvisor run: -m 1: want at least 2 MiB (a number of MiB or 512M, 2G)\n" },
      { "-kernel " .. G .. "pctest.elf -m 64T", "moonvisor run: -m: 65536.0 GiB of RAM is more than this host has (" },
      { "-kernel " .. G .. "pctest.elf -smp 0", "moonvisor run: -smp 0: want 1..255 CPUs\n" },
      { "-kernel " .. G .. "pctest.elf -serial pty", "moonvisor run: -serial pty: supported are stdio, file:PATH, null, none\n" },
      { "-kernel " .. G .. "pctest.elf -device e1000", "moonvisor run: -device e1000: the only device is isa-debug-exit\n" },
      { "-kernel " .. G .. "pctest.elf -S", "moonvisor run: -S waits for gdb: give -gdb tcp::PORT (or -s) too\n" },
      { "-kernel " .. G .. "pctest.elf -frobnicate", "moonvisor run: unknown option -frobnicate (moonvisor run -h lists them)\n" },
      { "-kernel " .. G .. "pctest.elf -machine microvm", "moonvisor run: -machine microvm: moonvisor's PC is QEMU's pc machine\n" },
      { "-kernel", "moonvisor run: -kernel needs a value\n" },
    }
    for _, c in ipairs(cases) do
      it(c[1] ~= "" and c[1]:sub(1, 60) or "(no arguments)", function()
        local out, err, code = run(c[1])
        assert.equals(2, code, err)
        assert.equals("", out)
        if c[2]:sub(-1) == "\n" then assert.equals(c[2], err) else assert.equals(c[2], err:sub(1, #c[2])) end
      end)
    end

    it("a truncated kernel", function()
      local whole = slurp(G .. "pctest.elf")
      local SIZE = string.unpack("<I4", whole, 52 + 32 + 16 + 1)   -- p_filesz of the second program header
      local path = tmpfile(whole:sub(1, 6000))
      local _, err, code = run("-kernel " .. path)
      assert.equals(2, code)
      assert.equals(("moonvisor run: load.multiboot: %s: segment 0x100000+0x%x: file data 0x1000+0x%x is past the end " ..
                     "of the file (6000 bytes)\n"):format(path, SIZE, SIZE), err)
      os.remove(path)
    end)

    it("a kernel over the machine's ACPI tables", function()
      local path = tmpfile(string.pack("<I4I4I4I4I4I4I4I4", 0x1BADB002, 0x10003, (-(0x1BADB002 + 0x10003)) & 0xffffffff,
                                       0xe0000, 0xe0000, 0, 0, 0xe0020) .. ("\x90"):rep(0x100))
      local _, err, code = run("-kernel " .. path)
      assert.equals(2, code)
      assert.matches("^moonvisor run: load%.multiboot: .-: segment 0xe0000%+0x120 overlaps the ACPI tables 0xe0000%+0x%x+\n$", err)
      os.remove(path)
    end)

    it("an initrd or a Multiboot module that does not fit in RAM", function()
      local big = tmpfile(("\0"):rep(3 << 20))
      local _, err, code = run("-kernel " .. G .. "bzImage -m 3 -initrd " .. big)
      assert.equals(2, code)
      assert.matches("^moonvisor run: linux%.boot: build/guests/bzImage: initrd .- %(3145728 bytes%) does not fit in RAM", err)
      _, err, code = run("-kernel " .. G .. "mbhello.elf -m 2 -initrd " .. big)
      assert.equals(2, code)
      assert.matches("^moonvisor run: load%.multiboot: build/guests/mbhello%.elf: module 1 %(.-%) 0x%x+%+0x300000 is outside guest memory\n$", err)
      os.remove(big)
    end)
  end)

  describe("options", function()
    it("accepts QEMU's display, machine and accelerator options", function()
      local cfg = assert(runner.parse{ "-kernel", "k", "-nographic", "-display", "none", "-vga", "none", "-nodefaults",
        "-no-user-config", "-machine", "q35,accel=kvm", "-M", "pc", "-cpu", "host", "-monitor", "none", "-name", "x",
        "--append", "a b", "-enable-kvm" })
      assert.same({ "k", "a b", "kvm" }, { cfg.kernel, cfg.append, cfg.backend })
      assert.equals("soft", runner.parse{ "-kernel", "k", "-accel", "tcg" }.backend)
    end)

    it("reads -m, -smp, -gdb, -s, -S, -no-reboot, -device and -fw_cfg", function()
      local cfg = assert(runner.parse{ "-kernel", "k", "-m", "size=2G", "-smp", "cpus=3,sockets=1", "-gdb", "tcp:0.0.0.0:4321",
        "-S", "-no-reboot", "-device", "isa-debug-exit,iobase=0x604,iosize=0x04", "-fw_cfg", "name=opt/a,string=hi" })
      assert.same({ 2 << 30, 3, { host = "0.0.0.0", port = 4321 }, true, true, { iobase = 0x604, iosize = 4 }, { ["opt/a"] = "hi" } },
                  { cfg.mem, cfg.cpus, cfg.gdb, cfg.wait_gdb, cfg.no_reboot, cfg.debug_exit, cfg.files })
      assert.same({ host = "127.0.0.1", port = 1234 }, runner.parse{ "-kernel", "k", "-s" }.gdb)
      assert.same({ host = "127.0.0.1", port = 99 }, runner.parse{ "-kernel", "k", "-gdb", "tcp::99" }.gdb)
      assert.equals(512 << 20, runner.parse{ "-kernel", "k", "-m", "512" }.mem)
      assert.equals(512 << 20, runner.parse{ "-kernel", "k", "-m", "512M" }.mem)
    end)

    it("prints its help with -h, and moonvisor --help mentions run", function()
      local out, _, code = run("-h")
      assert.equals(0, code)
      assert.matches("^usage: moonvisor run %-kernel FILE %[options%]\n", out)
      assert.matches("\n  %-no%-reboot ", out)
      local p = io.popen(exe .. " --help 2>&1")
      local help = p:read("a")
      p:close()
      assert.matches("run %-kernel FILE %[%-append CMDLINE%]", help)
    end)
  end)
end)
