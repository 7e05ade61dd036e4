-- examples_spec.lua - the guest experiments in examples/ (protected, long,
-- mmio_device, hypercall, interrupts, sandbox, multiboot) run through the
-- moonvisor executable (MOONVISOR_EXE, default build/moonvisor) on the
-- backend under test, with their guests built by `make guests`; their
-- output is checked line by line where it is deterministic.
local H = require "helpers"

local exe = os.getenv("MOONVISOR_EXE") or "build/moonvisor"

-- Runs the executable with args; returns stdout, stderr, exit status.
local function run(args)
  local out, err = os.tmpname(), os.tmpname()
  local ok, _, code = os.execute(("MOONVISOR_BACKEND=%s %s %s >%s 2>%s </dev/null"):format(
    H.backend, exe, args, out, err))
  local function slurp(p)
    local f = io.open(p)
    local s = f:read("a")
    f:close()
    os.remove(p)
    return s
  end
  return slurp(out), slurp(err), ok and 0 or code
end

local function lines(s)
  local t = {}
  for l in s:gmatch("([^\n]*)\n") do t[#t + 1] = l end
  return t
end

describe("the guest experiments", function()
  it("protected.lua: a 32-bit C guest prints through the 16550 model", function()
    local out, err, code = run("examples/protected.lua")
    assert.equals(0, code, err)
    assert.same({
      "Hello from 32-bit protected mode!",
      "sizeof(void *) = 4, cs = 0x0008, cr0 = 0x00000031 (PE 1, PG 0)",
      "primes below 10000: 1229",
      "exit: hlt in _start; UART: 122 bytes sent at 115200 baud, 251 register accesses",
    }, lines(out))
  end)

  it("long.lua: a 64-bit C guest's CRC-32 matches the Lua one", function()
    local out, err, code = run("examples/long.lua")
    assert.equals(0, code, err)
    assert.same({
      "CRC-32 of 65536 bytes at 0x200000",
      "guest (64-bit C, long mode): 0xa8ece3df",
      "host  (Lua, bitwise):        0xa8ece3df",
      "match",
    }, lines(out))
  end)

  it("mmio_device.lua: the guest drives a Lua device through MMIO and a doorbell", function()
    local out, err, code = run("examples/mmio_device.lua")
    assert.equals(0, code, err)
    assert.same({
      "device id: CSUM",
      'adler32("Wikipedia") = 0x11e60398 (9 bytes, 4 status polls) ok',
      'adler32("moonvisor drives a device model written in Lua") = 0xa0771142 (46 bytes, 4 status polls) ok',
      'adler32("") = 0x00000001 (0 bytes, 4 status polls) ok',
      'adler32("The quick brown fox jumps over the lazy dog") = 0x5bdc0fda (43 bytes, 4 status polls) ok',
      "device: 25 register reads, 33 writes, 4 doorbells; guest waited 4 times; 0 wrong",
    }, lines(out))
  end)

  it("hypercall.lua: host functions in Lua called through the port ABI", function()
    local out, err, code = run("examples/hypercall.lua")
    assert.equals(0, code, err)
    assert.same({
      "[guest] hello from a 64-bit guest, through host_print",
      "[guest] host_mul_add(6, 7, 0) = 42",
      ("[guest] host_get_greeting wrote %d bytes: greetings from Lua 5.4 on the %s backend"):format(
        #("greetings from Lua 5.4 on the " .. H.backend .. " backend"), H.backend),
      "[guest] host_fib(0..10) = 0 1 1 2 3 5 8 13 21 34 55",
      "[guest] unknown function 99 returns -38",
      "19 hypercalls: fib 11, get_greeting 1, mul_add 1, print 5, unknown 1",
    }, lines(out))
  end)

  it("interrupts.lua: the real-mode guest counts every injected tick", function()
    local out, err, code = run("examples/interrupts.lua")
    assert.equals(0, code, err)
    assert.same({
      "guest counted 15 timer interrupts",
      "host injected 10 while the guest polled port 0x40 (40 polls) and 5 while it halted; 15 EOIs",
    }, lines(out))
  end)

  it("sandbox.lua: faults are exits, and every call starts clean", function()
    local out, err, code = run("examples/sandbox.lua")
    assert.equals(0, code, err)
    local l = lines(out)
    assert.equals(9, #l, out)
    -- "call N: name(arg)          -> what": the rest of line n, after its prefix
    local function rest(n, call)
      local prefix = ("call %d: %-18s -> "):format(n, call)
      assert.equals(prefix, l[n]:sub(1, #prefix))
      return l[n]:sub(#prefix + 1)
    end
    assert.equals("111", rest(1, "collatz(27)"))
    assert.matches("^fault: read of 4 bytes at unmapped 0x0, in sandbox_call%+0x%x+$", rest(2, "null_read(0)"))
    assert.equals("118", rest(3, "collatz(97)"))
    assert.matches("^fault: exception 6 %(#UD, invalid opcode%) in sandbox_call[%w.]*%+0x%x+$", rest(4, "ud2()"))
    assert.matches("^fault: exception 14 %(#PF, page fault%) in sandbox_call%+0x%x+$", rest(6, "wild_write(7)"))
    assert.equals("178", rest(5, "collatz(871)"))
    assert.equals("1", rest(7, "calls()"))
    assert.equals("524", rest(8, "collatz(837799)"))
    assert.equals("8 calls: 5 returned, 3 faulted and were contained", l[9])
  end)

  describe("multiboot.lua", function()
    it("boots mbhello.elf with a command line and a module; port 0xf4 sets the status", function()
      local out, err, code = run("examples/multiboot.lua --timeout 10000 " ..
        "--module examples/guests/mbmodule.txt=greeting build/guests/mbhello.elf hello world")
      assert.equals(33, code, err)   -- 0x10 << 1 | 1
      assert.same({
        "mbhello: booted by moonvisor",
        "command line: build/guests/mbhello.elf hello world",
        "module greeting: the contents of a Multiboot module",
      }, lines(out))
    end)

    it("a module's command line defaults to its path; --module=PATH works too", function()
      local out, err, code = run("examples/multiboot.lua --module=examples/guests/mbmodule.txt build/guests/mbhello.elf")
      assert.equals(33, code, err)
      assert.equals("module examples/guests/mbmodule.txt: the contents of a Multiboot module", lines(out)[3])
    end)

    it("boots the loader test kernels (ELF and a.out kludge); a halt ends with status 0", function()
      for file, text in pairs{ ["multiboot.elf"] = "ok\n", ["multiboot_aout.bin"] = "mb\n" } do
        local out, err, code = run("examples/multiboot.lua --timeout 10000 build/guests/" .. file)
        assert.equals(0, code, err)
        assert.equals(text, out)
        assert.matches("multiboot: the kernel halted at eip 0x%x+", err)
      end
    end)

    it("says what is wrong with its arguments or the kernel, with status 2", function()
      local _, err, code = run("examples/multiboot.lua")
      assert.equals(2, code)
      assert.matches("multiboot: no kernel given\nusage: ", err)
      _, err, code = run("examples/multiboot.lua --frob build/guests/mbhello.elf")
      assert.equals(2, code)
      assert.matches("unknown option %-%-frob", err)
      _, err, code = run("examples/multiboot.lua build/guests/hello.bin")
      assert.equals(2, code)
      assert.matches("load.multiboot: build/guests/hello.bin: no multiboot header", err)
    end)
  end)
end)
