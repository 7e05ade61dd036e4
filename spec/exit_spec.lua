-- exit_spec.lua - cpu:enter() and its exits: io, mem, bell, hlt, string IO,
-- access sizes, unclaimed accesses, readonly memory.
local mv = require "moonvisor"
local H = require "helpers"

describe("vcpu:enter()", function()
  it("returns a hlt exit after the guest halts", function()
    local g, cpu = H.real("hlt")
    local e = cpu:enter()
    assert.equals("hlt", e.type)
    assert.equals(0x1001, cpu.rip)
    g:close()
  end)

  it("returns an unclaimed OUT as an io exit with the data, RIP past the instruction", function()
    local g, cpu = H.real("mov al, 0x5a\nout 0x80, al\nhlt")
    local e = cpu:enter()
    assert.same({ type = "io", port = 0x80, size = 1, write = true, data = 0x5a }, e)
    assert.equals(0x1004, cpu.rip)
    assert.equals("hlt", cpu:enter().type)
  end)

  it("answers an unclaimed IN with all-ones, like an empty bus", function()
    local g, cpu = H.real("in ax, 0x60\nhlt")
    local e = cpu:enter()
    assert.equals("io", e.type)
    assert.is_false(e.write)
    assert.equals(0xffff, e.data)
    assert.equals(0xffff, cpu.rax & 0xffff)
  end)

  it("returns an unclaimed MMIO read with all-ones and completes the instruction", function()
    local g, cpu = H.real("mov ax, 0x2000\nmov ds, ax\nmov ebx, [0x10]\nhlt")
    local e = cpu:enter()   -- 0x20010 is not mapped
    assert.same({ type = "mem", addr = 0x20010, size = 4, write = false, data = 0xffffffff }, e)
    assert.equals(0xffffffff, cpu.rbx & 0xffffffff)
    assert.equals("hlt", cpu:enter().type)
  end)
end)

describe("io traps", function()
  it("call the handler with the exit and the cpu, and resume", function()
    local g, cpu = H.real("mov dx, 0x3f8\nmov al, 'A'\nout dx, al\nmov al, 'B'\nout dx, al\nhlt")
    local seen = {}
    g:trap("io", 0x3f8, 8, function(e, c)
      assert.equals(cpu, c)
      seen[#seen + 1] = ("%s %x %d %s %x"):format(e.type, e.port, e.size, tostring(e.write), e.data)
    end)
    assert.equals("hlt", cpu:enter().type)
    assert.same({ "io 3f8 1 true 41", "io 3f8 1 true 42" }, seen)
  end)

  it("feed the handler's return value to IN of 1, 2 and 4 bytes", function()
    local g, cpu = H.real([[
      in al, 0x70
      mov bl, al
      in ax, 0x72
      mov cx, ax
      in eax, 0x74
      hlt]])
    g:trap("io", 0x70, 8, function(e) return 0x11223344 + e.size end)
    assert.equals("hlt", cpu:enter().type)
    local r = cpu:read_state()
    assert.equals(0x45, r.rbx & 0xff)          -- truncated to the access size
    assert.equals(0x3346, r.rcx & 0xffff)
    assert.equals(0x11223348, r.rax & 0xffffffff)
  end)

  it("claim an access by the trap holding its first port", function()
    local g, cpu = H.real("mov dx, 0x3ff\nout dx, ax\nhlt")
    local got
    g:trap("io", 0x3f8, 8, function(e) got = e.port end)
    cpu:enter()
    assert.equals(0x3ff, got)
  end)

  it("give all-ones when the handler returns nothing for a read", function()
    local g, cpu = H.real("in al, 0x71\nhlt")
    g:trap("io", 0x71, 1, function() end)
    assert.equals("hlt", cpu:enter().type)
    assert.equals(0xff, cpu.rax & 0xff)
  end)

  it("call the handler once per element of rep outsb and rep insb", function()
    local g, cpu = H.real([[
      mov si, text
      mov cx, 5
      mov dx, 0x3f8
      rep outsb
      mov di, 0x3000
      mov cx, 4
      rep insb
      hlt
      text: db "hello"]])
    local out, n = {}, 0
    g:trap("io", 0x3f8, 1, function(e)
      if e.write then out[#out + 1] = string.char(e.data) return end
      n = n + 1
      return 0x60 + n
    end)
    assert.equals("hlt", cpu:enter().type)
    assert.equals("hello", table.concat(out))
    assert.equals("abcd", g:read(0x3000, 4))
    assert.equals(0, cpu.rcx & 0xffff)
  end)

  it("stop dispatching to a removed trap", function()
    local g, cpu = H.real("out 0x80, al\nout 0x80, al\nhlt")
    local n = 0
    local t
    t = g:trap("io", 0x80, 1, function() n = n + 1; t:remove() end)
    local e = cpu:enter()
    assert.equals(1, n)
    assert.equals("io", e.type)   -- the second out is unclaimed
    t:remove()                    -- twice is harmless
    assert.equals("Trap(removed)", tostring(t))
  end)

  it("hand over to another handler with trap:handler(fn), from inside a handler too, counters kept", function()
    local g, cpu = H.real("mov al, 7\nl: out 0x80, al\njmp l")
    local a, b, seen = 0, 0, nil
    local t
    local function second(e, c)   -- declares (exit, cpu), which the first did not
      b = b + 1
      seen = e.data
      if b == 5 then c:kick() end
    end
    local function first()
      a = a + 1
      if a == 3 then assert.equals(t, t:handler(second)) end   -- the very next access is second's
      if a > 3 then cpu:kick() end                              -- (it was not)
    end
    t = g:trap("io", 0x80, 1, first)
    assert.equals(first, t:handler())
    assert.equals("kick", cpu:enter().type)
    assert.same({ 3, 5, 7 }, { a, b, seen })
    assert.equals(second, t:handler())
    assert.equals(8, cpu:stats().traps[1].calls)
    t:handler(setmetatable({}, { __call = function(_, e, c) b = b + 1; seen = e.port; c:kick() end }))
    assert.equals("kick", cpu:enter().type)
    assert.same({ 6, 0x80 }, { b, seen })
  end)

  it("refuse trap:handler(x) for x not callable and for a removed trap, whose handler is nil", function()
    local g = H.real("hlt")
    local t = g:trap("io", 0x80, 1, function() end)
    local ok, err = pcall(t.handler, t, 42)
    assert.is_false(ok)
    assert.matches("trap:handler: handler must be a function, got number", err, 1, true)
    ok, err = pcall(t.handler, "t", print)
    assert.matches("trap:handler: expected a moonvisor.Trap, got string", err, 1, true)
    t:remove()
    assert.is_nil(t:handler())
    ok, err = pcall(t.handler, t, print)
    assert.matches("trap:handler: the trap was removed (or its guest closed)", err, 1, true)
    local u = g:trap("io", 0x81, 1, print)
    g:close()
    assert.is_nil(u:handler())
    assert.is_false(pcall(u.handler, u, print))
  end)
end)

describe("the exit table handlers get", function()
  -- it is one table per VCPU, updated in place: each field must be right
  -- whatever the previous access was
  it("holds every field of each access, whichever fields changed since the last", function()
    local g, cpu = H.real([[
      mov al, 1
      out 0x80, al      ; io write
      out 0x80, al      ; the same again
      mov al, 2
      out 0x80, al      ; other data
      out 0x81, al      ; other port
      in al, 0x80       ; a read: no data
      mov ax, 0x2000
      mov es, ax
      mov byte [es:4], 7  ; mem write at 0x20004
      mov al, [es:4]    ; mem read
      mov dx, 0x80
      out dx, ax        ; io, 2 bytes
      hlt]])
    local seen = {}
    local function record(e)
      local c = {}
      for k, v in pairs(e) do c[k] = v end
      seen[#seen + 1] = c
    end
    g:trap("io", 0x80, 2, record)
    g:trap("mem", 0x20000, 0x1000, function(e) record(e) return 0x42 end)
    assert.equals("hlt", cpu:run{ timeout_ms = 5000 }.type)
    local function io(port, size, write, data) return { type = "io", port = port, size = size, write = write, data = data } end
    local function mem(addr, size, write, data) return { type = "mem", addr = addr, size = size, write = write, data = data } end
    assert.same({ io(0x80, 1, true, 1), io(0x80, 1, true, 1), io(0x80, 1, true, 2), io(0x81, 1, true, 2),
                  io(0x80, 1, false), mem(0x20004, 1, true, 7), mem(0x20004, 1, false),
                  io(0x80, 2, true, 0x2042) }, seen)
  end)
end)

describe("mem traps", function()
  local code = [[
    mov ax, 0x4000
    mov ds, ax
    mov byte [0x0], 0x11
    mov word [0x2], 0x2233
    mov dword [0x4], 0x44556677
    mov al, [0x8]
    mov bx, [0xa]
    mov ecx, [0xc]
    hlt]]

  it("see writes of 1, 2 and 4 bytes and answer reads", function()
    local g, cpu = H.real(code)
    local log = {}
    g:trap("mem", 0x40000, 0x1000, function(e)
      log[#log + 1] = ("%s %x %d %s"):format(e.write and "w" or "r", e.addr, e.size, e.write and ("%x"):format(e.data) or "-")
      if not e.write then return 0x8877665544332211 end
    end)
    assert.equals("hlt", cpu:enter().type)
    assert.same({ "w 40000 1 11", "w 40002 2 2233", "w 40004 4 44556677",
                  "r 40008 1 -", "r 4000a 2 -", "r 4000c 4 -" }, log)
    local r = cpu:read_state()
    assert.equals(0x11, r.rax & 0xff)
    assert.equals(0x2211, r.rbx & 0xffff)
    assert.equals(0x44332211, r.rcx & 0xffffffff)
  end)

  if H.kvm then
    it("see 8-byte accesses (mov r64 in long mode) whole", function()
      -- not SSE movq: KVM's instruction emulator cannot decode it for MMIO on any host
      local g, cpu = H.moded("long", [[
        mov rbx, 0xd0000000
        mov rax, [rbx + 0x10]
        mov [rbx + 0x20], rax
        hlt]])
      local wrote
      g:trap("mem", 0xd0000000, 0x1000, function(e)
        if e.write then wrote = e.size .. ":" .. e.data else assert.equals(8, e.size) return 0x0102030405060708 end
      end)
      assert.equals("hlt", cpu:enter().type)
      assert.equals("8:" .. 0x0102030405060708, wrote)
      assert.equals(0x0102030405060708, cpu.rax)
    end)
  else
    it("see 8-byte accesses as two 4-byte halves (Unicorn's MMIO width)", function()
      local g, cpu = H.real([[
        mov ax, 0x4000
        mov ds, ax
        fild qword [0x10]
        fistp qword [0x20]
        hlt]])
      local log = {}
      g:trap("mem", 0x40000, 0x1000, function(e)
        log[#log + 1] = ("%s %x %d"):format(e.write and "w" or "r", e.addr, e.size)
        if e.write then log[#log] = log[#log] .. (" %x"):format(e.data) end
        return e.addr == 0x40010 and 0x05060708 or 0x01020304
      end)
      assert.equals("hlt", cpu:enter().type)
      assert.same({ "r 40010 4", "r 40014 4", "w 40020 4 5060708", "w 40024 4 1020304" }, log)
    end)
  end

  it("cannot overlap mapped memory, nor memory a trap", function()
    local g = H.guest()
    g:map(0, mv.vmo(0x10000))
    assert.has_error(function() g:trap("mem", 0xf000, 0x2000, function() end) end,
      "guest:trap: mem range 0xf000+0x2000 overlaps memory mapped at 0x0 (map memory around device ranges)")
    g:trap("mem", 0x20000, 0x10, function() end)
    assert.has_error(function() g:map(0x20000, mv.vmo(0x1000)) end,
      "guest:map: range 0x20000+0x1000 overlaps a mem or bell trap")
  end)
end)

describe("bell traps", function()
  it("deliver doorbell writes after the guest resumed, before enter returns", function()
    local g, cpu = H.real([[
      mov ax, 0x5000
      mov ds, ax
      mov dword [0x0], 1
      mov dword [0x0], 2
      mov word [0x4], 3
      out 0x80, al
      hlt]])
    local order = {}
    g:trap("bell", 0x50000, 8, function(e)
      order[#order + 1] = ("bell %x"):format(e.addr)
    end)
    g:trap("io", 0x80, 1, function() order[#order + 1] = "out" end)
    assert.equals("hlt", cpu:enter().type)
    -- the synchronous out ran while the bells were still pending
    assert.equals("out", order[1])
    table.sort(order)
    assert.same({ "bell 50000", "bell 50000", "bell 50004", "out" }, order)
  end)

  it("read as all-ones", function()
    local g, cpu = H.real("mov ax, 0x5000\nmov ds, ax\nmov eax, [0]\nhlt")
    g:trap("bell", 0x50000, 4, function() error("reads never ring") end)
    assert.equals("hlt", cpu:enter().type)
    assert.equals(0xffffffff, cpu.rax & 0xffffffff)
  end)
end)

describe("readonly mappings", function()
  it("turn guest writes into mem exits and leave memory unchanged", function()
    local g = H.guest()
    local ram, rom = mv.vmo(0x10000), mv.vmo(0x1000)
    rom:write(0, "ROM!")
    g:map(0, ram)
    g:map(0x10000, rom, { readonly = true })
    g:write(0x1000, H.asm("mov ax, 0x1000\nmov ds, ax\nmov al, [0]\nmov byte [1], 0x55\nhlt"))
    local cpu = g:vcpu{ entry = 0x1000 }
    local e = cpu:enter()
    assert.same({ type = "mem", addr = 0x10001, size = 1, write = true, data = 0x55 }, e)
    assert.equals("ROM!", rom:read(0, 4))
    assert.equals(string.byte("R"), cpu.rax & 0xff)    -- reads work
    assert.equals("hlt", cpu:enter().type)               -- the write completed (discarded)
  end)
end)

describe("dirty logging", function()
  it("reports pages written by the guest and by the host since the last call", function()
    local g = H.guest()
    local ram = mv.vmo(0x10000)
    g:map(0, ram, { log_dirty = true })
    g:write(0x1000, H.asm("mov byte [0x3000], 1\nmov byte [0x5fff], 2\nhlt"))
    local cpu = g:vcpu{ entry = 0x1000 }
    assert.same({ 0x1000 }, g:dirty_pages(0))     -- the host's write of the code
    assert.equals("hlt", cpu:enter().type)
    -- where the host logs pages the guest only ran as dirty too (mv.host().dirty_exact), the code page is in
    assert.same(mv.host(H.backend).dirty_exact and { 0x3000, 0x5000 } or { 0x1000, 0x3000, 0x5000 }, g:dirty_pages(0))
    assert.same({}, g:dirty_pages(0))
    ram:u8(0x8000, 7)                              -- host writes through the vmo count too
    assert.same({ 0x8000 }, g:dirty_pages(0))
  end)

  it("errors for a mapping without log_dirty", function()
    local g = H.guest()
    g:map(0, mv.vmo(0x1000))
    assert.has_error(function() g:dirty_pages(0) end,
      "guest:dirty_pages: the mapping at 0x0 was not mapped with log_dirty")
  end)
end)

describe("code the host rewrites between runs", function()
  it("runs as rewritten, not as first translated", function()
    local g, cpu = H.real("mov ax, 1\nhlt")
    assert.equals("hlt", cpu:run().type)
    assert.equals(1, cpu.rax & 0xffff)
    g:write(0x1000, H.asm("mov ax, 2\nhlt"))
    cpu.rip = 0x1000
    assert.equals("hlt", cpu:run().type)
    assert.equals(2, cpu.rax & 0xffff)
  end)
end)
