-- gdb_spec.lua - the gdb remote stub (scripts/moonvisor/gdb.lua) against
-- Debian's real gdb in batch mode, and a raw-socket client that sends
-- malformed packets.  The stub runs in a child moonvisor process
-- (spec/gdb_stub.lua with spec/gdb_target.c built here); everything runs
-- under `timeout`, so a hang fails instead of blocking.
local H = require "helpers"
local files = require "moonvisor.files"
local core = require "moonvisor.core"

local exe = os.getenv("MOONVISOR_EXE") or "build/moonvisor"
local n = 0
local function port()
  n = n + 1
  return 20000 + H.pid() % 10000 + n * 7
end

local function sh(cmd) return (H.sh(cmd)) end   -- the output

local function slurp(path) return files.read(path) or "" end

local function sleep(s) os.execute("sleep " .. s) end

local function poll(path, text, seconds)
  for _ = 1, seconds * 20 do
    if slurp(path):find(text, 1, true) then return slurp(path) end
    sleep(0.05)
  end
  error(("no %q in %s:\n%s"):format(text, path, slurp(path)), 2)
end

local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. dir)
local elf = dir .. "/gdb_target.elf"

-- The child stub: its output and "exit=N" when it ends go to a log file.
local function stub(args, prefix)
  local log = ("%s/stub-%d.log"):format(dir, n)
  os.execute(("(MOONVISOR_BACKEND=%s timeout 40 %s %s spec/gdb_stub.lua %s; echo \"exit=$?\") >%s 2>&1 &"):format(
    H.backend, exe, prefix or "", args, log))
  poll(log, "listening on", 5)
  return log
end

local function gdb(p, cmds, file)
  local args = { "timeout 30 gdb -batch -nx", file or "", "-ex 'set architecture i386:x86-64'",
                 ("-ex 'target remote 127.0.0.1:%d'"):format(p) }
  for _, c in ipairs(cmds) do args[#args + 1] = "-ex '" .. c .. "'" end
  return sh(table.concat(args, " "))
end

local function symbol(name)
  return tonumber(sh(("nm %s | awk '$3 == \"%s\" { print $1 }'"):format(elf, name)), 16)
end

describe("the gdb stub", function()
  setup(function()
    local out = sh(("gcc -m64 -g -O1 -ffreestanding -fno-pic -fno-pie -fno-stack-protector -fno-builtin " ..
      "-mno-red-zone -nostdlib -static -no-pie -Wl,-T,examples/guests/kernel.ld -Wl,-n -Wl,--build-id=none " ..
      "-o %s spec/gdb_target.c"):format(elf))
    assert(io.open(elf), "cannot build the gdb test guest: " .. out)
  end)

  teardown(function() os.execute("rm -rf " .. dir) end)

  it("lets gdb break on a symbol, read and write registers and memory, stepi and detach", function()
    local p = port()
    local log = stub(("%d %s"):format(p, elf))
    local tick = symbol("tick")
    -- no file for gdb: the stub hands it the ELF's path (qXfer:exec-file:read)
    local out = gdb(p, {
      "break tick", "continue", "info registers rip", "x/2i $pc", "p/x $rdi",
      "p answer", "set var answer = 7", "p answer", "set $r11 = 0x1234", "p/x $r11",
      "p/x $pc", "stepi", "p/x $pc", "stepi", "p/x $pc", "x/i $pc", "delete", "detach" })
    assert.matches("Breakpoint 1, tick %(i=i@entry=1%)", out)
    assert.matches(("rip%%s+0x%x%%s+0x%x <tick>"):format(tick, tick), out)
    local second = tonumber(out:match("=> 0x%x+ <tick>:[^\n]*\n%s+0x(%x+) <tick%+%d+>"), 16)
    assert.truthy(second, out)
    assert.matches("%$1 = 0x1\n", out)
    assert.matches("%$2 = 42\n%$3 = 7\n", out)
    assert.matches("%$4 = 0x1234\n", out)
    -- stepi: exactly one instruction each
    assert.matches(("%%$5 = 0x%x\n"):format(tick), out)
    assert.matches(("%%$6 = 0x%x\n"):format(second), out)
    local third = tonumber(out:match("%$7 = 0x(%x+)\n"), 16)
    assert.truthy(third > second and third < second + 15, out)
    assert.matches("Inferior 1 %(Remote target%) detached", out)
    local res = poll(log, "exit=", 10)
    assert.matches("session: detach clients=1 refused=0", res)
    assert.matches("then: timeout", res)   -- the guest ran on after the detach, through its trap
    assert.matches("uart: G\n", res)
    assert.matches("counter > 6: true", res)
    assert.matches("exit=0", res)
  end)

  it("moonvisor --gdb: the first cpu:run waits for gdb; break main with gdb's own copy of the ELF; kill", function()
    local p = port()
    local log = stub(("%d %s cli"):format(p, elf), ("--gdb 127.0.0.1:%d"):format(p))
    local out = gdb(p, { "break main", "continue", "bt", "x/i $pc", "kill" }, elf)
    assert.matches("Breakpoint 1, main %(%) at spec/gdb_target.c", out)
    assert.matches(("=> 0x%x <main>"):format(symbol("main")), out)
    local res = poll(log, "exit=", 10)
    assert.matches("killed from gdb", res)
    assert.matches("exit=1", res)
  end)

  it("moonvisor --gdb: the first cpu:enter of an enter loop waits for gdb too; after a detach the loop goes on", function()
    local p = port()
    local log = stub(("%d %s enter"):format(p, elf), ("--gdb 127.0.0.1:%d"):format(p))
    local out = gdb(p, { "break tick", "continue", "p i", "delete", "detach" }, elf)
    assert.matches("Breakpoint 1, tick %(i=i@entry=1%) at spec/gdb_target.c", out)
    assert.matches("%$1 = 1\n", out)
    local res = poll(log, "exit=", 10)
    assert.matches("then: timeout", res)
    assert.matches("uart: G\n", res)
    assert.matches("exit=0", res)
  end)

  describe("with moonvisor run", function()
    local pctest = "build/guests/pctest.elf"
    local function runner(p, args)
      local log = ("%s/run-%d.log"):format(dir, p)
      os.execute(("(MOONVISOR_BACKEND=%s timeout 60 %s run -kernel %s -gdb tcp::%d %s; echo \"exit=$?\") >%s 2>&1 &"):format(
        H.backend, exe, pctest, p, args, log))
      poll(log, "listening on", 10)
      return log
    end
    local function gdb32(p, cmds)
      local args = { "timeout 50 gdb -batch -nx", pctest, ("-ex 'target remote 127.0.0.1:%d'"):format(p) }
      for _, c in ipairs(cmds) do args[#args + 1] = "-ex '" .. c .. "'" end
      return sh(table.concat(args, " "))
    end

    it("-S waits for gdb before the first instruction; the kernel's end reaches gdb as its exit code", function()
      local p = port()
      local log = runner(p, "-S")
      local out = gdb32(p, { "break kmain", "continue", "info args", "delete", "continue" })
      assert.matches("Breakpoint 1, 0x%x+ in kmain %(%)", out)
      assert.matches("exited with code 0101", out)      -- 65: isa-debug-exit 0x20
      local res = poll(log, "exit=", 30)
      assert.matches("pctest: all checks passed", res)
      assert.matches("exit=65", res)
    end)

    it("moonvisor --gdb H:P run ... is -gdb tcp:H:P -S", function()
      local p = port()
      local log = ("%s/run-g-%d.log"):format(dir, p)
      os.execute(("(MOONVISOR_BACKEND=%s timeout 60 %s --gdb 127.0.0.1:%d run -kernel %s; echo \"exit=$?\") >%s 2>&1 &"):format(
        H.backend, exe, p, pctest, log))
      poll(log, "listening on", 10)
      local out = gdb32(p, { "p/x $eax", "p $pc == _start", "continue" })
      assert.matches("%$1 = 0x2badb002\n", out)          -- at the kernel's entry, with the Multiboot registers
      assert.matches("%$2 = 1\n", out)
      assert.matches("exited with code 0101", out)
      assert.matches("exit=65", poll(log, "exit=", 30))
    end)

    it("-gdb without -S: gdb attaches to a running kernel at any time; kill ends the run with status 4", function()
      local p = port()
      local log = runner(p, "-append spin --timeout 50000")
      poll(log, "pctest: all checks passed", 30)
      local out = gdb32(p, { "x/i $pc", "kill" })
      assert.matches(" in kmain ()\n", out, 1, true)
      local res = poll(log, "exit=", 30)
      assert.matches("moonvisor run: killed from gdb\n", res)
      assert.matches("exit=4", res)
    end)
  end)

  it("shows the x87/SSE state the guest loaded and writes it, and segment selectors, back", function()
    local p = port()
    local log = stub(("%d %s fpu"):format(p, elf))   -- fninit, fld1, fldpi, movdqu xmm1, ldmxcsr 0x9f80
    local out = gdb(p, {
      "info registers st0", "p $st1", "p/x $xmm1.uint128", "p $mxcsr", "p/x $ftag", "p/x $fstat", "p/x $fctrl",
      "p $fop",
      "set $xmm1.v4_int32 = {0x11111111, 0x22222222, 0x33333333, 0x44444444}", "p/x $xmm1.uint128",
      "set $xmm1.v2_int64[1] = 0x0123456789abcdef", "p/x $xmm1.uint128",
      "set $st0 = 2.5", "p $st0", "p $st1", "set $mxcsr = 0x1f80", "p $mxcsr",
      "set $es = 0", "p $es", "p $ds", "info float", "detach" })
    assert.matches("st0%s+3%.14159265358979323851 %(raw 0x4000c90fdaa22168c235%)", out)
    assert.matches("%$1 = 1\n", out)
    assert.matches("%$2 = 0xffeeddccbbaa99887766554433221100\n", out)
    assert.matches("%$3 = %[ IM DM ZM OM UM PM FZ %]\n", out)
    assert.matches("%$4 = 0xfff\n", out)       -- the full tag word: R6 and R7 valid, the rest empty
    assert.matches("%$5 = 0x3000\n", out)      -- TOP = 6
    assert.matches("%$6 = 0x37f\n", out)
    assert.matches("%$7 = 0\n", out)
    assert.matches("%$8 = 0x44444444333333332222222211111111\n", out)
    assert.matches("%$9 = 0x123456789abcdef2222222211111111\n", out)
    assert.matches("%$10 = 2%.5\n%$11 = 1\n", out)
    assert.matches("%$12 = %[ IM DM ZM OM UM PM %]\n", out)
    assert.matches("%$13 = 0\n%$14 = 16\n", out)
    assert.matches("=>R6: Valid%s+0x4000a000000000000000 %+2%.5", out)
    assert.matches("R7: Valid%s+0x3fff8000000000000000 %+1", out)
    assert.matches("Tag Word:%s+0x0fff", out)
    local res = poll(log, "exit=", 10)
    assert.matches("fpu code: hlt", res)
    assert.matches("session: detach clients=1 refused=0", res)
    -- the writes reached the VCPU (the guest then ran on; it uses no x87/SSE or es)
    assert.matches("xmm1 0123456789abcdef2222222211111111 st0 4000a000000000000000 mxcsr 0x1f80 es 0x0", res)
    assert.matches("exit=0", res)
  end)

  describe("on a raw socket", function()
    local function pkt(body)
      local sum = 0
      for i = 1, #body do sum = sum + body:byte(i) end
      return ("$%s#%02x"):format(body, sum & 0xff)
    end

    local function client(p)
      return core.tcp_connect("127.0.0.1", p, 2000)
    end

    -- Reads until the data so far matches pattern (2 s at most).
    local function expect(c, pattern, buf)
      buf = buf or ""
      for _ = 1, 40 do
        local s, e = buf:find(pattern)
        if s then return buf:sub(s, e), buf:sub(e + 1) end
        local ok, data = pcall(c.recv, c, 65536, 50)
        if not ok then break end
        buf = buf .. (data or "")
      end
      error(("no %q in %q"):format(pattern, buf), 2)
    end

    it("survives malformed packets, answers what it must, refuses a second client, takes Ctrl-C and a reconnect", function()
      local p = port()
      local log = stub(("%d %s"):format(p, elf))
      local c = client(p)
      c:send("$?#00")                               -- bad checksum
      expect(c, "^%-")
      c:send("garbage+-" .. pkt("?"))               -- garbage outside packets is skipped
      expect(c, "%+%$T05[^#]*thread:1;#%x%x")
      c:send("$" .. ("x"):rep(0x5000) .. "#00")     -- oversized
      expect(c, "^%-")
      c:send(pkt("g"))
      local g = expect(c, "%+%$(%x+)#%x%x")
      assert.equals(2 + 536 * 2 + 3, #g)            -- '+$', 536 bytes of registers, '#xx'
      c:send(pkt("Z1,100000,1"))                    -- no hardware breakpoints
      expect(c, "%+%$#00")
      c:send(pkt("qXfer:features:read:target.xml:0,ffff"))
      expect(c, "<architecture>i386:x86%-64</architecture>.-#%x%x")
      c:send(pkt("m0,zz"))
      expect(c, "%+%$E01#%x%x")
      -- X with escapes, read back
      c:send(pkt("X300000,4:}\3}\4}]a"))             -- "#$}a", escaped
      expect(c, "%+%$OK#9a")
      c:send(pkt("m300000,4"))
      expect(c, "%+%$23247d61#%x%x")
      c:send(pkt("QStartNoAckMode"))
      expect(c, "%+%$OK#9a")
      c:send(pkt("p10"))                            -- rip, without a '+' now
      expect(c, "^%$0000100000000000#%x%x")
      -- a second client is turned away
      local other = client(p)
      expect(other, "E10")
      other:close()
      -- Ctrl-C while the guest runs
      c:send(pkt("c"))
      sleep(0.3)
      c:send("\3")
      expect(c, "^%$T02[^#]*#%x%x")
      -- disconnect mid-run: the guest stops, the server takes the next client
      c:send(pkt("c"))
      sleep(0.1)
      c:close()
      sleep(0.2)
      local c2 = client(p)
      c2:send(pkt("?"))
      expect(c2, "%+%$T05")
      c2:send(pkt("D"))
      expect(c2, "%$OK#9a")
      c2:close()
      local res = poll(log, "exit=", 10)
      assert.matches("session: detach clients=2 refused=1 bad_packets=2", res)
      assert.matches("uart: G\n", res)
      assert.matches("exit=0", res)
    end)

    it("binds the loopback address by default and names the call in its errors", function()
      local mv = require "moonvisor"
      local g = H.guest()
      g:map(0, mv.vmo(0x10000))
      local cpu = g:vcpu{ entry = 0x1000 }
      local srv = g:gdbserver{ port = 0, cpu = cpu, wait = false, quiet = true }
      assert.equals("127.0.0.1", srv.host)
      assert.truthy(srv.port > 0)
      local ok, err = pcall(g.gdbserver, g, { port = srv.port, cpu = cpu, quiet = true })
      assert.falsy(ok)
      assert.matches("guest:gdbserver: 127.0.0.1:%d+: Address already in use", err)
      srv:close()
      ok, err = pcall(g.gdbserver, g, { port = 0 })
      assert.matches("guest:gdbserver: cpu must be a moonvisor.Vcpu, got nil", err)
      ok, err = pcall(core.tcp_connect, "127.0.0.1", srv.port, 500)
      assert.matches("core.tcp_connect: 127.0.0.1:%d+: Connection refused", err)
      g:close()
    end)
  end)
end)
