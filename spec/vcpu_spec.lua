-- vcpu_spec.lua - VCPU registers, handler errors, re-entrancy, kicks and
-- lifetime (children keep their guest alive, close releases everything).
local mv = require "moonvisor"
local H = require "helpers"

describe("vcpu registers", function()
  it("round-trip through write_state and read_state", function()
    local g, cpu = H.real("hlt")
    local want = { rax = 0x11223344, rbx = 0x55667788, rcx = 0x99aabbcc, rdx = 0xddeeff00,
                   rsi = 0x1234, rdi = 0x5678, rbp = 0x9abc, rsp = 0xdef0, rip = 0x1000 }
    if H.kvm then
      for k, v in pairs{ rax = 0x1122334455667788, r8 = 8, r9 = 9, r10 = 10, r11 = 11,
                         r12 = 12, r13 = 13, r14 = 14, r15 = -1 } do want[k] = v end
    end
    cpu:write_state(want)
    local got = cpu:read_state()
    for k, v in pairs(want) do assert.equals(v, got[k], k) end
    assert.equals(2, got.rflags & 2)   -- the reserved bit stays set
  end)

  it("are readable and writable one at a time", function()
    local g, cpu = H.real("inc ax\nhlt")
    cpu.rax = 41
    assert.equals(0x1000, cpu.rip)
    cpu:enter()
    assert.equals(42, cpu.rax)
    assert.is_nil(cpu.not_a_register)
    assert.has_error(function() cpu.xyz = 1 end, "vcpu: cannot set field xyz (not a register)")
  end)

  it("let handlers read and change registers (a hypercall)", function()
    local g, cpu = H.real("mov ax, 20\nmov bx, 22\nout 0xf0, al\nhlt")
    g:trap("io", 0xf0, 1, function(e, c)
      local r = c:read_state()
      c:write_state{ rcx = r.rax + r.rbx }
    end)
    assert.equals("hlt", cpu:enter().type)
    assert.equals(42, cpu.rcx & 0xffff)
  end)

  it("expose segments and control registers through sregs", function()
    local g, cpu = H.real("hlt")
    local s = cpu:sregs()
    assert.equals(0, s.cs.base)
    assert.equals(0, s.cs.selector)
    assert.equals(0, s.cr0 & 1)   -- real mode
    cpu:write_sregs{ ds = { selector = 0x100, base = 0x1000 } }
    assert.equals(0x1000, cpu:sregs().ds.base)
  end)
end)

describe("trap handlers", function()
  it("re-raise errors from enter with the traceback, and the VCPU resumes", function()
    local g, cpu = H.real("out 0x80, al\nout 0x80, al\nhlt")
    local calls = 0
    g:trap("io", 0x80, 1, function()
      calls = calls + 1
      if calls == 1 then error("boom") end
    end)
    local ok, err = pcall(cpu.enter, cpu)
    assert.is_false(ok)
    assert.matches("^vcpu:enter: io handler for port 0x80 %(out, 1 bytes%) failed: .*boom", err)
    assert.matches("stack traceback", err)
    assert.equals("hlt", cpu:enter().type)   -- the second out reached the handler
    assert.equals(2, calls)
  end)

  it("fail the read when a handler returns a non-integer", function()
    local g, cpu = H.real("in al, 0x81\nhlt")
    g:trap("io", 0x81, 1, function() return 1.5 end)
    local ok, err = pcall(cpu.enter, cpu)
    assert.is_false(ok)
    assert.matches("handler returned a non%-integer number for an io read of 0x81", err)
    assert.equals(0xff, cpu.rax & 0xff)   -- the guest saw all-ones
    assert.equals("hlt", cpu:enter().type)
  end)

  it("accept floats that hold an integer", function()
    local g, cpu = H.real("in al, 0x81\nhlt")
    g:trap("io", 0x81, 1, function() return 7.0 end)
    cpu:enter()
    assert.equals(7, cpu.rax & 0xff)
  end)

  it("refuse a nested enter of the same VCPU", function()
    local g, cpu = H.real("out 0x80, al\nhlt")
    g:trap("io", 0x80, 1, function(_, c) c:enter() end)
    local ok, err = pcall(cpu.enter, cpu)
    assert.is_false(ok)
    assert.matches("vcpu:enter: called from inside a trap handler of the same VCPU", err)
    assert.equals("hlt", cpu:enter().type)
  end)

  it("can close the guest; enter then reports it", function()
    local g, cpu = H.real("out 0x80, al\nhlt")
    g:trap("io", 0x80, 1, function() g:close() end)
    assert.has_error(function() cpu:enter() end, "vcpu:enter: the guest was closed by a trap handler")
    assert.equals("Guest(closed)", tostring(g))
    assert.has_error(function() cpu:enter() end, "vcpu:enter: attempt to use a vcpu of a closed guest")
  end)
end)

-- On kvm the handlers of accesses run without a protected call each: an
-- error jumps out of the core's exit loop to cpu:enter, which lets the core
-- finish the access as a failed one.  Each case below leaves the objects
-- usable on both backends.
describe("a trap handler's error", function()
  it("makes an IN read all ones and the instruction complete", function()
    local g, cpu = H.real("mov al, 0x12\nin al, 0x81\nmov bl, al\nhlt")
    g:trap("io", 0x81, 1, function() error("no device") end)
    local ok, err = pcall(cpu.enter, cpu)
    assert.is_false(ok)
    assert.matches("^vcpu:enter: io handler for port 0x81 %(in, 1 bytes%) failed: .*no device", err)
    assert.equals("hlt", cpu:enter().type)
    assert.equals(0xff, cpu.rbx & 0xff)
  end)

  it("on a later OUT of one enter (a parameterless handler seen before) ends it, and the next resumes", function()
    local g, cpu = H.real("mov al, 1\nl: out 0x80, al\ninc al\njmp l")
    local n, last = 0, nil
    g:trap("io", 0x80, 1, function()
      n = n + 1
      last = cpu.rax & 0xff
      if n % 3 == 0 then error("every third") end
    end)
    local ok, err = pcall(cpu.enter, cpu)
    assert.is_false(ok)
    assert.matches("^vcpu:enter: io handler for port 0x80 %(out, 1 bytes%) failed: .*every third", err)
    assert.same({ 3, 3 }, { n, last })
    ok, err = pcall(cpu.enter, cpu)
    assert.is_false(ok)
    assert.matches("every third", err)
    assert.same({ 6, 6 }, { n, last })   -- the failed out completed once, not again
  end)

  it("makes an MMIO read all ones", function()
    local g, cpu = H.real("mov ax, 0x2000\nmov ds, ax\nmov eax, 0x12345678\nmov eax, [0x10]\nhlt")
    g:trap("mem", 0x20000, 0x1000, function() error("no device") end)
    local ok, err = pcall(cpu.enter, cpu)
    assert.is_false(ok)
    assert.matches("^vcpu:enter: mem handler for 0x20010 %(read, 4 bytes%) failed: .*no device", err)
    assert.equals("hlt", cpu:enter().type)
    assert.equals(0xffffffff, cpu.rax & 0xffffffff)
  end)

  it("in the middle of rep insb keeps the elements before it and fills the rest", function()
    local g, cpu = H.real("mov di, 0x3000\nmov cx, 4\nmov dx, 0x3f8\nrep insb\nhlt")
    local n = 0
    g:trap("io", 0x3f8, 1, function()
      n = n + 1
      if n == 3 then error("third") end
      return 0x60 + n
    end)
    local ok, err = pcall(cpu.enter, cpu)
    assert.is_false(ok)
    assert.matches("third", err)
    local e = cpu:enter()
    while e.type ~= "hlt" do e = cpu:enter() end
    assert.equals("ab", g:read(0x3000, 2))
    assert.equals("\xff", g:read(0x3002, 1))
  end)

  it("inside a timed enter leaves no timeout behind", function()
    local g, cpu = H.real("out 0x80, al\nl: out 0x81, al\njmp l")
    g:trap("io", 0x80, 1, function() error("boom") end)
    local n = 0
    g:trap("io", 0x81, 1, function(_, c) n = n + 1; if n == 2000 then c:kick() end end)
    assert.is_false(pcall(cpu.enter, cpu, { timeout_ms = 60000 }))
    -- a timed enter right away is not refused as a second timed run, and ends by the kick
    assert.equals("kick", cpu:enter{ timeout_ms = 60000 }.type)
    assert.equals(2000, n)
  end)

  it("after closing the guest reports the close", function()
    local g, cpu = H.real("out 0x80, al\nhlt")
    g:trap("io", 0x80, 1, function() g:close() error("and then this") end)
    assert.has_error(function() cpu:enter() end, "vcpu:enter: the guest was closed by a trap handler")
    assert.equals("Guest(closed)", tostring(g))
  end)

  it("in a handler of another VCPU's enter stays with that enter", function()
    local g1, cpu1 = H.real("out 0x80, al\nhlt")
    local g2, cpu2 = H.real("out 0x90, al\nhlt")
    g2:trap("io", 0x90, 1, function() error("inner") end)
    local inner
    g1:trap("io", 0x80, 1, function() inner = select(2, pcall(cpu2.enter, cpu2)) end)
    assert.equals("hlt", cpu1:enter().type)
    assert.matches("io handler for port 0x90 %(out, 1 bytes%) failed: .*inner", inner)
    assert.equals("hlt", cpu2:enter().type)
  end)

  it("still delivers the doorbells rung before it, and reports the access's error", function()
    local g, cpu = H.real("mov ax, 0x5000\nmov ds, ax\nmov dword [0x0], 1\nout 0x80, al\nhlt")
    local rung = 0
    g:trap("bell", 0x50000, 8, function() rung = rung + 1 end)
    g:trap("io", 0x80, 1, function() error("boom") end)
    local ok, err = pcall(cpu.enter, cpu)
    assert.is_false(ok)
    assert.matches("^vcpu:enter: io handler for port 0x80 %(out, 1 bytes%) failed: .*boom", err)
    assert.equals(1, rung)
    assert.equals("hlt", cpu:enter().type)
    assert.equals(1, rung)
  end)

  it("is counted as the exit enter ended with", function()
    local g, cpu = H.real("out 0x80, al\nhlt")
    g:trap("io", 0x80, 1, function() error("boom") end)
    assert.is_false(pcall(cpu.enter, cpu))
    assert.equals("hlt", cpu:enter().type)
    assert.same({ io = 1, hlt = 1 }, cpu:stats().exits)
  end)
end)

describe("vcpu:kick()", function()
  it("before enter makes that enter return a kick exit at once", function()
    local g, cpu = H.real("jmp $")
    cpu:kick()
    assert.equals("kick", cpu:enter().type)
    assert.equals(0x1000, cpu.rip)
  end)

  it("from a handler stops a spinning guest", function()
    local g, cpu = H.real("l: out 0x80, al\njmp l")
    local n = 0
    g:trap("io", 0x80, 1, function(_, c) n = n + 1; if n == 100 then c:kick() end end)
    assert.equals("kick", cpu:enter().type)
    assert.equals(100, n)
  end)
end)

describe("vcpu:interrupt()", function()
  it("delivers a queued vector through the real-mode IVT when IF is set", function()
    local g, cpu = H.real([[
      mov word [0x20*4], isr
      mov word [0x20*4+2], 0
      mov sp, 0x8000
      sti
      l: out 0x80, al
      jmp l
      isr: mov al, 0x42
      out 0x81, al
      hlt]])
    local n = 0
    g:trap("io", 0x80, 1, function(_, c) n = n + 1; if n == 3 then c:interrupt(0x20) end end)
    local got
    g:trap("io", 0x81, 1, function(e) got = e.data end)
    assert.equals("hlt", cpu:enter().type)
    assert.equals(0x42, got)
  end)
end)

describe("lifetime", function()
  it("a VCPU keeps its guest alive after the guest variable is gone", function()
    local cpu
    do
      local g = H.real("mov ax, 7\nhlt")
      cpu = select(2, H.real("mov ax, 7\nhlt"))
      g = nil
    end
    collectgarbage(); collectgarbage()
    assert.equals("hlt", cpu:enter().type)
    assert.equals(7, cpu.rax & 0xffff)
  end)

  it("close is idempotent and __close closes at scope end", function()
    local before = H.fd_count()
    do
      local g <close> = H.real("hlt")
      local ram <close> = mv.vmo(0x1000)
      g:map(0x10000, ram)
      ram:close(); ram:close()   -- the mapping keeps the memory
      assert.equals(0, g:u8(0x10000))
    end
    local g, cpu = H.real("hlt")
    cpu:close(); cpu:close()
    g:close(); g:close()
    assert.equals("Vcpu(closed)", tostring(cpu))
    assert.equals(before, H.fd_count())
  end)

  it("creating and closing 500 guests leaks no file descriptor", function()
    local before = H.fd_count()
    for i = 1, 500 do
      local g, cpu = H.real("hlt")
      assert.equals("hlt", cpu:enter().type)
      g:close()
    end
    collectgarbage()
    assert.equals(before, H.fd_count())
  end)

  it("prints something useful", function()
    local g, cpu = H.real("hlt")
    g:trap("io", 1, 1, function() end)
    assert.equals(("Guest(%s, 1 maps, 1 traps)"):format(H.backend), tostring(g))
    assert.equals(("Vcpu(0, %s)"):format(H.backend), tostring(cpu))
    assert.equals("Vmo(4096 bytes)", tostring(mv.vmo(1)))
  end)
end)

describe("cpu:run{ timeout_ms }", function()
  it("stops a spinning guest with a timeout exit, and the VCPU stays usable", function()
    local g, cpu = H.real("spin: jmp spin\nagain: mov ax, 5\nhlt")
    local t0 = os.clock()
    local e = cpu:run{ timeout_ms = 50 }
    assert.equals("timeout", e.type)
    assert.equals(0x1000, cpu.rip)
    cpu.rip = 0x1002
    assert.equals("hlt", cpu:run{ timeout_ms = 1000 }.type)
    assert.equals(5, cpu.rax & 0xffff)
    cpu.rip = 0x1002
    assert.equals("hlt", cpu:run().type)   -- no stale kick left behind
  end)

  it("does not fire after a run that ended on its own", function()
    -- the tightest timeout the run still beats, so the timer fires just
    -- after it ends (1 ms on hardware; a host with slow exits needs more)
    local g, cpu = H.real("hlt\nhlt\nhlt")
    local ms, e = 1, nil
    repeat
      cpu.rip = 0x1000
      e = cpu:run{ timeout_ms = ms }
      ms = ms * 2
    until e.type ~= "timeout" or ms > 4096
    assert.equals("hlt", e.type)
    local t = os.time()
    while os.time() - t < 1 and os.clock() < 0 do end
    assert.equals("hlt", cpu:enter().type)
  end)

  it("rejects a bad timeout", function()
    local g, cpu = H.real("hlt")
    assert.has_error(function() cpu:enter{ timeout_ms = -1 } end,
      "vcpu:enter: timeout_ms must be a number of milliseconds in 0..1e9, got -1")
  end)
end)

describe("cpu:debug()", function()
  it("single-steps one instruction per enter with a debug exit", function()
    local g, cpu = H.real("mov ax, 1\nmov bx, 2\nmov al, 0xf4\nhlt")
    cpu:debug{ singlestep = true }
    local rips = {}
    for i = 1, 3 do
      local e = cpu:enter()
      assert.equals("debug", e.type)
      assert.equals(1, e.exception)
      rips[i] = cpu.rip
    end
    assert.same({ 0x1003, 0x1006, 0x1008 }, rips)
    assert.equals("hlt", cpu:enter().type)
    cpu:debug()
  end)

  it("stops at an int3 breakpoint with rip on the int3", function()
    local g, cpu = H.real("mov ax, 1\nnop\nmov ax, 2\nhlt")
    local saved = g:u8(0x1003)
    g:u8(0x1003, 0xcc)               -- int3 over the nop
    cpu:debug{ breakpoints = true }
    local e = cpu:enter()
    assert.equals("debug", e.type)
    assert.equals(3, e.exception)
    assert.equals(0x1003, e.rip)
    assert.equals(0x1003, cpu.rip)
    g:u8(0x1003, saved)              -- continue over it, as a debugger does
    assert.equals("hlt", cpu:enter().type)
    assert.equals(2, cpu.rax & 0xffff)
  end)
end)
