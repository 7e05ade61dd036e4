-- smp_spec.lua - guest:run: several VCPUs at once.  On KVM they run on
-- threads of their own (concurrent), on the soft backend in turn by
-- instruction quantum (deterministic).  Every VCPU below is a real-mode
-- VCPU with its code at 0x1000 * (its number + 1).
local mv = require "moonvisor"
local H = require "helpers"

-- A guest with 1 MiB of RAM and one VCPU per source in codes.
local function smp(codes, opts)
  local g = H.guest(opts)
  local ram = mv.vmo(0x100000)
  g:map(0, ram)
  local cpus = {}
  for i, src in ipairs(codes) do
    local at = 0x1000 * i
    g:write(at, H.asm(("org 0x%x\n"):format(at) .. src))
    cpus[i] = g:vcpu{ entry = at }
  end
  return g, cpus, ram
end

local SPIN = "xor ax, ax\nmov ds, ax\nl: lock inc dword [0x600]\njmp l"   -- counts at 0x600 forever

local pid = assert(io.open("/proc/self/stat")):read("n")
-- Entries of /proc/<pid>/<dir>: threads ("task") or fds ("fd").  Threads
-- leave out KVM's own workers, which newer kernels run as threads of the
-- process while a VM exists (kvm-nx-lpage-recovery, comm "kvm-nx-lpage-re").
local function count(dir)
  local cmd = dir == "task" and "cat /proc/%d/task/*/comm | grep -vc '^kvm-'" or "ls /proc/%d/%s | wc -l"
  local p = io.popen(cmd:format(pid, dir))
  local n = p:read("n")
  p:close()
  return n
end

local function image(name)
  return assert(io.open("build/guests/" .. name, "rb"), "run make first"):read("a")
end

-- Runs cpus in 30 ms runs until done() (a VCPU thread may not get the
-- host's CPU within one run on a loaded machine); false after 10 s of runs.
local function run_until(g, cpus, done)
  local deadline = mv.clock() + 10
  repeat
    if done() then return true end
    assert.equals("timeout", g:run(cpus, { timeout_ms = 30 }).reason)
  until mv.clock() > deadline
  return done()
end

-- Runs cpus until a handler on port w.woken stops the run, after the
-- handler on port w.at sent cpus[w.to] interrupt w.vector; checks that VCPU
-- `id` took it, and closes g.
local function assert_woken(g, cpus, w, id)
  local woke
  g:trap("io", w.at, 1, function() cpus[w.to]:interrupt(w.vector) end)
  g:trap("io", w.woken, 1, function(_, cpu) woke = cpu.id; g:stop() end)
  local res = g:run(cpus, { timeout_ms = 120000 })
  assert.equals("stop", res.reason)
  assert.equals(id, woke)
  g:close()
end

describe("guest:run", function()
  it("runs every VCPU of examples/guests/smp.bin: the lock xadd counter adds up, each CPU its share", function()
    local g = H.guest()
    g:map(0, mv.vmo(0x100000))
    g:write(0x1000, image("smp.bin"))
    g:u32(0x50c, 3000)
    local cpus = { g:vcpu{ entry = 0x1000, mode = "protected" } }
    for i = 1, 3 do cpus[#cpus + 1] = g:vcpu{ entry = 0x8000 } end
    local seen = {}
    g:trap("io", 0x520, 4, function(exit, cpu) seen[#seen + 1] = { exit.data, cpu.id } end)
    local res = g:run(cpus, { timeout_ms = 120000 })
    assert.equals("halted", res.reason)     -- no irqchip: every CPU ends in a hlt exit
    assert.equals(4 * 3000, g:u32(0x500))
    assert.equals(4, g:u32(0x504))
    assert.equals(4, #seen)
    for _, s in ipairs(seen) do
      assert.equals(s[2], s[1])            -- CPUID's APIC id is the VCPU's id
      assert.equals(3000, g:u32(0x600 + 4 * s[1]))
    end
    g:close()
  end)

  it("shows the guest the VCPUs created: CPUID's initial APIC id and count", function()
    local code = "mov eax, 1\ncpuid\nmov eax, ebx\nmov dx, 0x709\nout dx, eax\nh: hlt\njmp h"
    local g, cpus = smp({ code, code, code })
    local seen = {}
    g:trap("io", 0x709, 4, function(exit, cpu) seen[cpu.id] = { exit.data >> 24, exit.data >> 16 & 0xff } end)
    assert.equals("halted", g:run(cpus, { timeout_ms = 120000 }).reason)
    assert.same({ [0] = { 0, 3 }, { 1, 3 }, { 2, 3 } }, seen)
    g:close()
  end)

  it("starts the APs with INIT/SIPI through the in-kernel LAPIC #kvm", function()
    local g = H.guest{ irqchip = true }
    g:map(0, mv.vmo(0x100000))
    g:write(0x1000, image("smp.bin"))
    g:u32(0x50c, 2000)
    g:u32(0x510, 1)
    local cpus = { g:vcpu{ entry = 0x1000, mode = "protected" }, g:vcpu{ entry = 0x8000 }, g:vcpu{ entry = 0x8000 } }
    local seen = {}
    g:trap("io", 0x520, 4, function(exit, cpu)
      seen[cpu.id] = exit.data
      if g:u32(0x504) >= 2 and #seen == 2 and seen[0] then g:stop() end
    end)
    local res = g:run(cpus, { timeout_ms = 120000 })
    assert.equals("stop", res.reason)
    assert.same({ [0] = 0, 1, 2 }, seen)
    assert.equals(3 * 2000, g:u32(0x500))
    g:close()
  end)

  -- With the in-kernel LAPIC: VCPU 0 starts VCPU 1 (INIT/SIPI), which goes
  -- to protected mode, turns its LAPIC on and halts with an interrupt gate
  -- for vector 0x40 that reports on port 0x70b; then VCPU 0 runs `tail`.
  local function lapic_pair(tail)
    local g = H.guest{ irqchip = true }
    g:map(0, mv.vmo(0x100000))
    g:write(0x1000, H.asm([[
      org 0x1000
      or dword [0xfee000f0], 0x100         ; LAPIC on
      mov dword [0xfee00310], 0
      mov dword [0xfee00300], 0x000c4500   ; INIT to all but self
      mov dword [0xfee00300], 0x000c4608   ; SIPI: 0x8000
    w: cmp dword [0x700], 1
      jne w
    ]] .. tail .. "\nh: hlt\njmp h", 32))
    g:write(0x8000, H.asm([[
      org 0x8000
      bits 16
      cli
      xor ax, ax
      mov ds, ax
      lgdt [0x7f0]
      mov eax, cr0
      or al, 1
      mov cr0, eax
      jmp dword 0x08:pm
      bits 32
    pm: mov ax, 0x10
      mov ds, ax
      mov es, ax
      mov ss, ax
      mov esp, 0x9f00
      lidt [idtr]
      or dword [0xfee000f0], 0x100         ; LAPIC on
      mov dword [0x700], 1                 ; ready
      sti
    h: hlt
      jmp h
    isr: mov dx, 0x70b
      out dx, al
      mov dword [0xfee000b0], 0            ; EOI
      iret
      align 8
    idt: times 0x40 dq 0
      dw isr, 0x08, 0x8e00, 0              ; vector 0x40: interrupt gate
    idtr: dw 0x41 * 8 - 1
      dd idt]], 16))
    local cpus = { g:vcpu{ entry = 0x1000, mode = "protected" }, g:vcpu{ entry = 0x8000 } }
    local gdt = cpus[1]:sregs().gdt
    g:write(0x7f0, string.pack("<I2I4", gdt.limit, gdt.base))
    return g, cpus
  end

  it("carries a fixed IPI from one VCPU's local APIC to another's #kvm", function()
    local g, cpus = lapic_pair("mov dword [0xfee00310], 1 << 24\nmov dword [0xfee00300], 0x00004040")  -- fixed, 0x40
    local woke
    g:trap("io", 0x70b, 1, function(_, cpu) woke = cpu.id; g:stop() end)
    local res = g:run(cpus, { timeout_ms = 120000 })
    assert.equals("stop", res.reason)
    assert.equals(1, woke)
    g:close()
  end)

  it("delivers cpu:interrupt from one VCPU's handler through the other's local APIC #kvm", function()
    local g, cpus = lapic_pair("mov dx, 0x70c\nout dx, al")
    assert_woken(g, cpus, { at = 0x70c, to = 2, vector = 0x40, woken = 0x70b }, 1)
  end)

  it("keeps an AP running while another VCPU's handler runs (the AP's count moves meanwhile) #kvm", function()
    local g, cpus = smp({ "mov dx, 0x700\nout dx, al\nh: hlt\njmp h", SPIN })
    local moved
    g:trap("io", 0x700, 1, function()
      local before, deadline = g:u32(0x600), mv.clock() + 60   -- the bound only ends a broken run
      repeat moved = g:u32(0x600) - before until moved >= 1000 or mv.clock() > deadline
      g:stop()
    end)
    local res = g:run(cpus, { timeout_ms = 120000 })
    assert.equals("stop", res.reason)
    assert.is_true(moved >= 1000, "the AP added " .. tostring(moved) .. " while the handler ran")
    g:close()
  end)

  it("never runs two handlers at once", function()
    local loop = "mov cx, 300\nl: mov dx, 0x701\nout dx, al\nloop l\nh: hlt\njmp h"
    local g, cpus = smp({ loop, loop, loop })
    local inside, most, calls, by = 0, 0, 0, {}
    g:trap("io", 0x701, 1, function(_, cpu)
      inside = inside + 1
      if inside > most then most = inside end
      for _ = 1, 20 do local _ = g:u32(0x600) end   -- some work inside
      calls = calls + 1
      by[cpu.id] = (by[cpu.id] or 0) + 1
      inside = inside - 1
    end)
    local res = g:run(cpus, { timeout_ms = 120000 })
    assert.equals("halted", res.reason)
    assert.equals(1, most)
    assert.equals(900, calls)
    assert.same({ [0] = 300, 300, 300 }, by)
    for i = 1, 3 do assert.equals(300, cpus[i]:stats().handled.io) end   -- per VCPU
    g:close()
  end)

  it("hands a trap over to another handler (trap:handler) for every VCPU, from a handler of one", function()
    local loop = "mov cx, 300\nl: mov dx, 0x701\nout dx, al\nloop l\nh: hlt\njmp h"
    local g, cpus = smp({ loop, loop, loop })
    local first, second, t = 0, 0, nil
    local function later(e, cpu)   -- declares (exit, cpu), the first handler nothing
      assert(e.port == 0x701 and cpu.id >= 0)
      second = second + 1
    end
    t = g:trap("io", 0x701, 1, function()
      first = first + 1
      if first == 100 then t:handler(later) end
    end)
    local res = g:run(cpus, { timeout_ms = 120000 })
    assert.equals("halted", res.reason)
    assert.same({ 100, 800 }, { first, second })
    assert.equals(later, t:handler())
    g:close()
  end)

  it("traces every VCPU on a track of its own", function()
    local loop = "mov cx, 20\nl: mov dx, 0x701\nout dx, al\nloop l\nh: hlt\njmp h"
    local g, cpus = smp({ loop, loop })
    g:trap("io", 0x701, 1, function() end)
    local path = os.tmpname()
    g:trace(path)
    assert.equals("halted", g:run(cpus, { timeout_ms = 120000 }).reason)
    g:trace()
    local text = assert(io.open(path)):read("a")
    os.remove(path)
    local rows = {}
    for tid in text:gmatch('"tid":(%d+)[^\n]*"name":"io 0x701 write"') do rows[tid] = (rows[tid] or 0) + 1 end
    assert.same({ ["0"] = 20, ["1"] = 20 }, rows)
    g:close()
  end)

  it("delivers doorbells rung by several VCPUs, every one", function()
    local ring = "mov ax, 0x2000\nmov es, ax\nmov cx, 10\nl: mov byte [es:0], 1\nloop l\nh: hlt\njmp h"
    local g = H.guest()
    g:map(0, mv.vmo(0x10000))   -- 0x20000 is no memory: the doorbell's
    local cpus = {}
    for i = 1, 2 do
      g:write(0x1000 * i, H.asm(("org 0x%x\n"):format(0x1000 * i) .. ring))
      cpus[i] = g:vcpu{ entry = 0x1000 * i }
    end
    local rung = 0
    g:trap("bell", 0x20000, 1, function(exit) assert(exit.type == "bell"); rung = rung + 1 end)
    assert.equals("halted", g:run(cpus, { timeout_ms = 120000 }).reason)
    assert.equals(20, rung)
    g:close()
  end)

  it("serialises handlers of a run started from a handler of another run with the outer run's", function()
    local loop = "mov cx, 100\nl: mov dx, 0x701\nout dx, al\nloop l\nh: hlt\njmp h"
    local g, cpus = smp({ loop, "mov dx, 0x70a\nout dx, al\nh: hlt\njmp h" })
    local g2, cpus2 = smp({ loop, loop })
    local inside, most, calls = 0, 0, 0
    local function handler()
      inside = inside + 1
      if inside > most then most = inside end
      for _ = 1, 20 do local _ = g:u32(0x600) end
      calls = calls + 1
      inside = inside - 1
    end
    g:trap("io", 0x701, 1, handler)
    g2:trap("io", 0x701, 1, handler)
    local inner
    g:trap("io", 0x70a, 1, function() inner = g2:run(cpus2, { timeout_ms = 120000 }).reason end)
    assert.equals("halted", g:run(cpus, { timeout_ms = 120000 }).reason)
    assert.equals("halted", inner)
    assert.equals(1, most)
    assert.equals(300, calls)
    g2:close()
    g:close()
  end)

  it("raises a secondary VCPU's handler error with the VCPU, the exit and the traceback, and stops all", function()
    local tasks = count("task")
    local g, cpus = smp({ SPIN, "mov dx, 0x702\nout dx, al\nh: hlt\njmp h" })
    g:trap("io", 0x702, 1, function(_, cpu) error("boom from cpu " .. cpu.id) end)
    local ok, msg = pcall(g.run, g, cpus, { timeout_ms = 120000 })
    assert.is_false(ok)
    assert.matches("^guest:run: vcpu 1: io handler for port 0x702 %(out, 1 bytes%) failed: .*boom from cpu 1", msg)
    assert.matches("stack traceback", msg)
    assert.equals(tasks, count("task"))     -- every VCPU thread joined
    local res = g:run(cpus, { timeout_ms = 50 })   -- both usable again
    assert.equals("timeout", res.reason)
    g:close()
  end)

  it("stops every VCPU when a handler calls g:stop()", function()
    local g, cpus = smp({ SPIN, "mov dx, 0x703\nout dx, al\nl: jmp l" })
    g:trap("io", 0x703, 1, function() g:stop() end)
    local res = g:run(cpus, { timeout_ms = 120000 })
    assert.equals("stop", res.reason)
    assert.is_nil(res.cpu)
    assert.is_true(cpus[1].rip >= 0x1000 and cpus[1].rip < 0x1010)
    assert.equals(0x2004, cpus[2].rip)     -- at its jmp
    g:close()
  end)

  it("ends with a VCPU's kick exit when a handler kicks it", function()
    local g, cpus = smp({ SPIN, "mov dx, 0x703\nout dx, al\nl: jmp l" })
    g:trap("io", 0x703, 1, function() cpus[1]:kick() end)
    local res = g:run(cpus, { timeout_ms = 120000 })
    assert.equals("exit", res.reason)
    assert.equals(cpus[1], res.cpu)
    assert.equals("kick", res.exit.type)
    g:close()
  end)

  it("delivers cpu:interrupt from one VCPU's handler to another VCPU halted in hlt", function()
    local g, cpus = smp({ [[
      xor ax, ax
      mov ds, ax
      mov word [0x20 * 4], isr
      mov word [0x20 * 4 + 2], 0
      mov byte [0x700], 1
      sti
    h: hlt
      jmp h
    isr: mov dx, 0x705
      out dx, al
      iret]], [[
      xor ax, ax
      mov ds, ax
    w: cmp byte [0x700], 1
      jne w
      mov dx, 0x704
      out dx, al
      cli
    h: hlt
      jmp h]] })
    assert_woken(g, cpus, { at = 0x704, to = 1, vector = 0x20, woken = 0x705 }, 0)
  end)

  it("stops every VCPU at a timeout, and runs them again", function()
    local g, cpus = smp({ SPIN, SPIN })
    local res = g:run(cpus, { timeout_ms = 50 })
    assert.equals("timeout", res.reason)
    local n = g:u32(0x600)
    res = g:run{ cpus[1], cpus[2], timeout_ms = 50 }
    assert.equals("timeout", res.reason)
    assert.is_true(run_until(g, cpus, function() return g:u32(0x600) > n end))
    g:close()
  end)

  it("snapshots and restores every VCPU, wherever each stopped", function()
    local g, cpus = smp({ "xor ax, ax\nmov ds, ax\nl: inc dword [0x600]\ninc si\njmp l",
                          "xor ax, ax\nmov ds, ax\nl: inc dword [0x604]\ninc bx\ninc bx\njmp l" })
    g:run(cpus, { timeout_ms = 30, quantum = 777 })
    local s = g:snapshot()
    local st = { cpus[1]:read_state(), cpus[2]:read_state() }
    local mem = g:read(0x600, 8)
    assert.is_true(run_until(g, cpus, function()                -- both ran on
      return st[1].rsi ~= cpus[1]:read_state().rsi and st[2].rbx ~= cpus[2]:read_state().rbx
    end))
    assert.are_not.same(mem, g:read(0x600, 8))
    g:restore(s)
    assert.same(st[1], cpus[1]:read_state())
    assert.same(st[2], cpus[2]:read_state())
    assert.equals(mem, g:read(0x600, 8))
    assert.equals("timeout", g:run(cpus, { timeout_ms = 30 }).reason)   -- and run on from there
    assert.is_true(run_until(g, cpus, function() return g:u32(0x600) > string.unpack("<I4", mem) end))
    g:close()
  end)

  if not H.kvm then
    -- Each of three VCPUs appends its number to a shared log 2000 times
    -- (lock xadd hands out the slots): the log is the interleaving.
    local function interleaving(quantum)
      local code = function(id)
        return ("xor ax, ax\nmov ds, ax\nmov cx, 2000\nl: mov eax, 1\nlock xadd [0x500], eax\n" ..
                "mov byte [0x10000 + eax], %d\nloop l\nh: hlt\njmp h"):format(id)
      end
      local g, cpus = smp({ code(1), code(2), code(3) })
      local res = g:run(cpus, { quantum = quantum })
      assert.equals("halted", res.reason)
      local log = g:read(0x10000, 6000)
      local regs = {}
      for i = 1, 3 do regs[i] = cpus[i]:read_state() end
      g:close()
      return log, regs, res.turns
    end

    it("interleaves the same way on every run with the same quantum, differently with another (soft)", function()
      local a, ra, ta = interleaving(100)
      local b, rb, tb = interleaving(100)
      assert.equals(a, b)
      assert.same(ra, rb)
      assert.equals(ta, tb)
      assert.is_truthy(a:find("\1\2", 1, true) and a:find("\2\3", 1, true))   -- it did interleave
      local c = interleaving(37)
      assert.are_not.equal(a, c)
      for _, log in ipairs{ a, c } do   -- every slot written once
        local n = { 0, 0, 0 }
        for i = 1, #log do local k = log:byte(i); n[k] = n[k] + 1 end
        assert.same({ 2000, 2000, 2000 }, n)
      end
    end)
  end
end)

describe("the REPL's cont{ cpu0, cpu1, ... }", function()
  local R = require "moonvisor.repl"
  -- g:run has no int3 emulation: where the host does not intercept int3
  -- (mv.host().int3_exit false: the nested test VM, kvm-pvm), breakpoints of
  -- a cont of several VCPUs are not seen.
  local int3 = not H.kvm or mv.host().int3_exit
  if int3 then
    it("runs every VCPU and names the one whose breakpoint stopped them all", function()
      local g, cpus = smp({ SPIN, "xor ax, ax\nmov ds, ax\nmov cx, 0\nl: inc cx\ncmp cx, 3\njne l\nh: hlt\njmp h" })
      R.breakpoint(cpus[2], 0x2008)   -- cmp cx, 3
      for i = 1, 3 do
        local s = R.cont{ cpus[1], cpus[2] }
        assert.equals("breakpoint", s.how)
        assert.equals(cpus[2], s.cpu)
        assert.equals(i, cpus[2].rcx & 0xffff)
        assert.equals("vcpu 1: breakpoint 1 at 0x2008:  cmp cx, 3", tostring(s))
      end
      local s = R.cont({ cpus[1], cpus[2] }, { timeout_ms = 50 })   -- CPU 1 halted, CPU 0 spins on
      assert.equals("timeout", s.how)
      assert.is_true(g:u32(0x600) > 0)
      R.delete(cpus[2])
      g:close()
    end)
  end

  it("refuses what is not a list of VCPUs", function()
    assert.has_error(function() R.cont{} end, "cont: expected a moonvisor.Vcpu or a list of them, got an empty table")
    assert.has_error(function() R.cont{ 1 } end, "cont: [1] must be a moonvisor.Vcpu, got number")
  end)
end)

describe("the gdb stub with several VCPUs", function()
  local exe = os.getenv("MOONVISOR_EXE") or "build/moonvisor"
  local sh = require("tmux").sh      -- a command's output, stderr included

  -- Starts spec/gdb_smp_stub.lua on a port, runs gdb's commands against it;
  -- returns gdb's output and the stub's.
  local function session(cmds, mode)
    local port = 30000 + pid % 10000
    local log = os.tmpname()
    local gdb_flag = mode == "run" and ("--gdb 127.0.0.1:%d"):format(port) or ""
    os.execute(("(MOONVISOR_BACKEND=%s timeout 40 %s %s spec/gdb_smp_stub.lua %d %s; echo \"exit=$?\") >%s 2>&1 &")
      :format(H.backend, exe, gdb_flag, port, mode or "", log))
    for _ = 1, 100 do
      if assert(io.open(log)):read("a"):find("listening on", 1, true) then break end
      os.execute("sleep 0.05")
    end
    local args = { ("timeout 30 gdb -batch -nx -ex 'target remote 127.0.0.1:%d'"):format(port) }
    for _, c in ipairs(cmds) do args[#args + 1] = "-ex '" .. c .. "'" end
    local out = sh(table.concat(args, " "))
    local stub
    for _ = 1, 100 do
      stub = assert(io.open(log)):read("a")
      if stub:find("exit=", 1, true) then break end
      os.execute("sleep 0.05")
    end
    os.remove(log)
    return out, stub
  end

  it("shows one thread per VCPU and reads each one's registers", function()
    local out, stub = session{ "info threads", "thread 2", "p/x $pc", "thread 1", "p/x $pc", "detach" }
    assert.matches("Thread 1 .*Thread 2 ", out)
    assert.matches("%$1 = 0x2000", out)
    assert.matches("%$2 = 0x1000", out)
    assert.matches("session: detach clients=1", stub)
  end)

  it("moonvisor --gdb: a g:run of several VCPUs waits for gdb, one thread each; after a detach the run goes on", function()
    local out, stub = session({ "info threads", "thread 2", "p/x $pc", "detach" }, "run")
    assert.matches("Thread 1 .*Thread 2 ", out)
    assert.matches("%$1 = 0x2000", out)
    assert.matches("run: ended; cpu1 rcx=3", stub)   -- VCPU 1 ran its loop to the hlt after the detach
  end)

  if not H.kvm or mv.host().int3_exit then   -- g:run has no int3 emulation
    it("stops every VCPU at a breakpoint of one and names its thread", function()
      local out, stub = session{ "break *0x2004", "continue", "p/x $pc", "continue", "info threads", "detach" }
      assert.matches("Thread 2 [^\n]*hit Breakpoint 1", out)
      assert.matches("%$1 = 0x2004", out)
      assert.matches("session: detach clients=1; cpu0 rip=0x100%d cpu1 rcx=2", stub)
    end)
  end
end)

describe("Ctrl-C in the REPL during guest:run", function()
  it("stops every VCPU and the prompt comes back", function()
    local tmux = require "tmux"
    local exe = os.getenv("MOONVISOR_EXE") or "build/moonvisor"
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
H = require "helpers"
g = H.guest()
g:map(0, require("moonvisor").vmo(0x10000))
g:write(0x1000, "\xeb\xfe")
g:write(0x2000, "\xeb\xfe")
cpus = { g:vcpu{ entry = 0x1000 }, g:vcpu{ entry = 0x2000 } }
]])
    f:close()
    local history = os.tmpname()
    local s = tmux.start(("MOONVISOR_BACKEND=%s MOONVISOR_HISTORY=%s LUA_PATH=%s %s -i %s"):format(
      H.backend, tmux.q(history), tmux.q("spec/?.lua;;"), exe, script), "moonvisor>")
    finally(function()
      tmux.sh(("tmux -L %s kill-server"):format(s.sock))
      os.remove(script)
      os.remove(history)
    end)
    s:line("g:run(cpus).reason --[[run]]")
    tmux.sh("sleep 0.5")   -- let them spin
    s:keys("C-c")
    s:wait("\nstop\nmoonvisor>", "--[[run]]")
    s:line("cpus[2].rip --[[rip]]")
    s:wait("8192", "--[[rip]]")
  end)
end)

describe("moonvisor.fuzz with several VCPUs", function()
  -- Two CPUs add 1 to [0x600] 200 times each without a lock; CPU 0 waits
  -- for both and reports a lost update on port 0x666.
  local adds = [[xor ax, ax
      mov ds, ax
      mov cx, 200
    l: mov eax, [0x600]
      inc eax
      mov [0x600], eax
      loop l
      lock inc dword [0x604]
  ]]
  local racy = {
    adds .. [[
    w: cmp dword [0x604], 2
      jne w
      cmp dword [0x600], 400
      je ok
      mov dx, 0x666
      out dx, al
    ok: hlt
      jmp ok]],
    adds .. [[
    h: hlt
      jmp h]],
  }

  if not H.kvm then
    it("lets the first input byte pick the quantum: the race shows with one, not with the other, the same every time (soft)", function()
      local fuzz = require "moonvisor.fuzz"
      local f = fuzz.new{
        setup = function()
          local g, cpus = smp(racy)
          return g, cpus[1], cpus[2]
        end,
        schedule = { quanta = { 100000, 3 } },
        oracle = { fail_port = 0x666 },
        quiet = true,
      }
      assert.is_nil(f:exec("\0").kind)
      local out = f:exec("\1")
      assert.equals("guest-failure", out.kind)
      assert.equals(3, out.quantum)
      assert.equals(0, out.cpu)
      assert.equals(out.key, f:exec("\1").key)
      assert.is_nil(f:exec("\2").kind)   -- 2 % 2 + 1: the first quantum again
    end)
  end
end)

describe("guest:run with bad input", function()
  it("refuses more VCPUs than a guest may have", function()
    local g = H.guest()
    g:map(0, mv.vmo(0x10000))
    for _ = 1, 64 do g:vcpu{ entry = 0x1000 } end
    assert.has_error(function() g:vcpu{ entry = 0x1000 } end, "guest:vcpu: too many VCPUs (at most 64)")
    g:close()
  end)

  it("names the argument that is wrong", function()
    local g, cpus = smp({ SPIN, SPIN })
    local other, ocpus = smp({ SPIN })
    assert.has_error(function() g:run{} end, "guest:run: no VCPUs given (g:run{ cpu0, cpu1, ... })")
    assert.has_error(function() g:run{ cpus[1], cpus[1] } end, "guest:run: vcpu 0 is listed twice")
    assert.has_error(function() g:run{ cpus[1], ocpus[1] } end, "guest:run: [2] (vcpu 0) belongs to another guest")
    assert.has_error(function() g:run{ cpus[1], 7 } end, "guest:run: [2] must be a moonvisor.Vcpu, got number")
    assert.has_error(function() g:run({ cpus[1] }, { quantum = 0 }) end,
                     "guest:run: quantum must be a number of instructions in 1..2^40, got 0")
    assert.has_error(function() g:run({ cpus[1] }, { timeout_ms = "soon" }) end,
                     "guest:run: timeout_ms must be a number of milliseconds in 0..1e9, got string")
    assert.has_error(function() g:run(cpus, 5) end, "guest:run: options must be a table, got number")
    other:close()
    g:close()
    assert.has_error(function() g:run(cpus) end, "guest:run: attempt to use a closed guest")
  end)

  it("refuses to enter a VCPU the run is running, and a run inside the run, from a handler", function()
    local g, cpus = smp({ "mov dx, 0x706\nout dx, al\nl: jmp l", SPIN })
    local errs = {}
    g:trap("io", 0x706, 1, function()
      errs[1] = select(2, pcall(cpus[2].enter, cpus[2]))
      errs[2] = select(2, pcall(g.run, g, { cpus[2] }))
      g:stop()
    end)
    assert.equals("stop", g:run(cpus, { timeout_ms = 120000 }).reason)
    assert.equals("vcpu:enter: VCPU 1 is running in guest:run", errs[1])
    assert.equals("guest:run: the guest is running already (guest:run from a trap handler?)", errs[2])
    g:close()
  end)

  it("closes the guest a handler closed once every VCPU stopped: no thread, fd or deadlock left", function()
    collectgarbage()
    local tasks, fds = count("task"), count("fd")
    do
      local g, cpus = smp({ SPIN, SPIN, "mov dx, 0x707\nout dx, al\nl: jmp l" })
      g:trap("io", 0x707, 1, function() g:close() end)
      assert.has_error(function() g:run(cpus, { timeout_ms = 120000 }) end,
                       "guest:run: the guest was closed by a trap handler")
      assert.equals("Guest(closed)", tostring(g))
      assert.has_error(function() cpus[1]:enter() end, "vcpu:enter: attempt to use a vcpu of a closed guest")
    end
    collectgarbage()
    collectgarbage()
    assert.equals(tasks, count("task"))
    assert.equals(fds, count("fd"))
  end)
end)
