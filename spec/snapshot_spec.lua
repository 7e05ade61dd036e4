-- snapshot_spec.lua - g:snapshot() / g:restore(s): byte-identical memory
-- and identical registers after the guest scribbles, dirty-page restores,
-- older snapshots after newer ones, files with checksums.
local mv = require "moonvisor"
local H = require "helpers"
local files = require "moonvisor.files"

-- A long-mode guest that scribbles over 16 pages and its registers.
local scribbler = [[
  mov rdi, 0x100000
  mov rcx, 16
l:mov qword [rdi], rcx
  mov qword [rdi + 8], rdi
  add rdi, 0x1000
  loop l
  mov rax, 0xdead
  mov r15, 0xbeef
  hlt]]

local function setup()
  local g = H.guest()
  local ram = mv.vmo(0x400000)
  g:map(0, ram)
  g:write(0x1000, H.asm(scribbler, 64))
  local cpu = g:vcpu{ entry = 0x1000, mode = "long", tables = 0x300000 }
  return g, cpu, ram
end

describe("guest snapshots", function()
  it("restore byte-identical memory and identical registers", function()
    local g, cpu, ram = setup()
    ram:write(0x100000, ("seed"):rep(0x1000))
    local before_mem = ram:read(0, #ram)
    local before_regs = cpu:read_state()
    local s = g:snapshot()
    assert.equals("hlt", cpu:run{ timeout_ms = 5000 }.type)
    assert.is_true(ram:read(0, #ram) ~= before_mem)
    assert.equals(0xbeef, cpu.r15)
    local pages = g:restore(s)
    assert.is_true(pages >= 16 and pages <= 24, "copied " .. pages .. " pages")   -- only the dirty ones
    assert.is_true(before_mem == ram:read(0, #ram), "memory differs after restore")
    assert.same(before_regs, cpu:read_state())
    assert.equals("hlt", cpu:run{ timeout_ms = 5000 }.type)   -- and it runs again the same way
    assert.equals(0xbeef, cpu.r15)
  end)

  it("see host writes as changes too", function()
    local g, cpu, ram = setup()
    local s = g:snapshot()
    -- pages copied with nothing written: 0 on kvm; the soft backend also
    -- copies the page tables, whose accessed bits its page walker sets unseen
    local base = g:restore(s)
    ram:write(0x200000, "host was here")
    g:write(0x201000, "and here")
    assert.equals(base + 2, g:restore(s))
    assert.equals(("\0"):rep(13), ram:read(0x200000, 13))
    assert.equals(base, g:restore(s))   -- nothing changed since
  end)

  it("restore an older snapshot after a newer one was taken", function()
    local g, cpu, ram = setup()
    local old = g:snapshot()
    ram:write(0x200000, "newer")
    local new = g:snapshot()
    ram:write(0x200000, "later")
    g:restore(old)
    assert.equals(("\0"):rep(5), ram:read(0x200000, 5))
    g:restore(new)
    assert.equals("newer", ram:read(0x200000, 5))
    g:restore(old)
    assert.equals(("\0"):rep(5), ram:read(0x200000, 5))
  end)

  it("restore after a timeout and after an exception", function()
    local g = H.guest()
    local ram = mv.vmo(0x200000)
    g:map(0, ram)
    g:write(0x1000, H.asm("mov byte [0x5000], 1\nspin: jmp spin", 64))
    local cpu = g:vcpu{ entry = 0x1000, mode = "long" }
    local s = g:snapshot()
    assert.equals("timeout", cpu:run{ timeout_ms = 20 }.type)
    g:restore(s)
    assert.equals(0x1000, cpu.rip)
    assert.equals(0, ram:u8(0x5000))
    g:write(0x1000, H.asm("ud2", 64))
    local e = cpu:run{ timeout_ms = 5000 }
    assert.is_true(e.type == "exception" or e.type == "shutdown" or e.type == "internal_error", e.type)
    g:restore(s)
    assert.equals(0x1000, cpu.rip)
    local code = H.asm("mov byte [0x5000], 1\nspin: jmp spin", 64)
    assert.equals(code, g:read(0x1000, #code))
  end)

  it("round-trip through a file", function()
    local g, cpu, ram = setup()
    ram:write(0x123000, "persisted")
    cpu.rbx = 0x42
    local path = os.tmpname()
    g:snapshot():save(path)
    local s = mv.load_snapshot(path)
    os.remove(path)
    assert.matches("^Snapshot%(4096 KiB, 1 vcpus%)$", tostring(s))
    ram:write(0x123000, "overwrite")
    cpu.rbx = 7
    g:restore(s)
    assert.equals("persisted", ram:read(0x123000, 9))
    assert.equals(0x42, cpu.rbx)
    assert.equals("hlt", cpu:run{ timeout_ms = 5000 }.type)
  end)

  it("reject corrupt, truncated and foreign files with a clear error", function()
    local g = setup()
    local path = os.tmpname()
    g:snapshot():save(path)
    local f = io.open(path, "rb")
    local good = f:read("a")
    f:close()
    local function try(bytes)
      local w = io.open(path, "wb")
      w:write(bytes)
      w:close()
      local ok, err = pcall(mv.load_snapshot, path)
      assert.is_false(ok)
      return err
    end
    assert.matches("bad magic", try("NOTASNAP" .. good:sub(9)))
    assert.matches("checksum mismatch", try(good:sub(1, 5000) .. "X" .. good:sub(5002)))
    assert.matches("checksum mismatch", try(good:sub(1, #good - 100)))
    assert.matches("too short", try("MV"))
    assert.matches("version", try(good:sub(1, 8) .. string.pack("<I4", 99) .. good:sub(13)))
    os.remove(path)
    assert.matches("No such file", select(2, pcall(mv.load_snapshot, path)))
  end)

  it("survive fuzzed files: truncated, bit-flipped and random bytes give errors, never a crash", function()
    local g = H.guest()
    g:map(0, mv.vmo(0x2000))
    local path = os.tmpname()
    g:snapshot():save(path)
    local good = io.open(path, "rb"):read("a")
    local seed = 12345
    local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n + 1 end
    local refused = 0
    for i = 1, 300 do
      local bytes
      if i <= 100 then bytes = good:sub(1, rnd(#good))                       -- truncated
      elseif i <= 200 then                                                   -- bit flips
        local at = rnd(#good)
        bytes = good:sub(1, at - 1) .. string.char(good:byte(at) ~ (1 << (rnd(8) - 1))) .. good:sub(at + 1)
      else                                                                   -- random bytes after a valid magic
        local t = {}
        for k = 1, rnd(200) do t[k] = string.char(rnd(256) - 1) end
        bytes = good:sub(1, 12) .. table.concat(t)
      end
      local f = io.open(path, "wb"); f:write(bytes); f:close()
      local ok, err = pcall(mv.load_snapshot, path)
      if not ok then
        refused = refused + 1
        assert.matches("^mv.load_snapshot: ", err)
      end
    end
    os.remove(path)
    assert.is_true(refused >= 299, refused .. " of 300 refused")   -- a truncation to full length loads
  end)

  it("refuse a snapshot of another shape", function()
    local g = setup()
    local s = g:snapshot()
    local other = H.guest()
    other:map(0, mv.vmo(0x1000))
    assert.has_error(function() other:restore(s) end,
      "guest:restore: the snapshot maps 0x0+0x400000, the guest 0x0+0x1000")
    local none = H.guest()
    none:map(0, mv.vmo(0x400000))
    assert.has_error(function() none:restore(s) end, "guest:restore: the snapshot has 1 VCPUs, the guest 0")
  end)

  it("cannot be taken from inside a trap handler", function()
    local g, cpu = H.real("out 0x80, al\nhlt")
    g:trap("io", 0x80, 1, function() g:snapshot() end)
    local ok, err = pcall(cpu.run, cpu)
    assert.is_false(ok)
    assert.matches("guest:snapshot: a VCPU of this guest is running", err)
  end)
end)

-- A restore into the guest whose state last equalled the snapshot writes
-- back only what can have changed since (on KVM: the classes a run or the
-- host touched, pages logged or not yet re-protected).  Each case has the
-- guest change one piece of state, in a mode where it can, read the old
-- value into a register first, and run twice: after the restore the second
-- run must read what the first did.
describe("guest snapshots restore what the guest changed", function()
  -- runs the guest to its hlt twice, restoring s in between; returns the
  -- registers of both runs
  local function twice(g, cpu, s, rounds)
    local seen = {}
    for i = 1, rounds or 2 do
      local e = cpu:run{ timeout_ms = 5000 }
      assert.equals("hlt", e.type, e.type .. " " .. tostring(e.vector or e.suberror or ""))
      seen[i] = cpu:read_state()
      g:restore(s)
    end
    return seen
  end

  it("x87, SSE and MXCSR state (XSAVE), also after a host write", function()
    local g, cpu = H.moded("long", [[
      movq rax, xmm3          ; the old value
      stmxcsr [0x5000]
      mov ebx, [0x5000]
      fnstcw [0x5008]
      movzx ecx, word [0x5008]
      mov rdx, 0x1234567890
      movq xmm3, rdx
      mov dword [0x5000], 0x9fc0
      ldmxcsr [0x5000]
      mov word [0x5008], 0x27f
      fldcw [0x5008]
      hlt]])
    local before = cpu:fpu()
    local s = g:snapshot()
    local r = twice(g, cpu, s, 3)
    assert.equals(0, r[1].rax)
    assert.same(r[1], r[2])
    assert.same(r[1], r[3])
    assert.same(before, cpu:fpu())
    cpu:write_fpu{ fcw = 0x37f, mxcsr = 0x1f80, xmm = { [4] = string.pack("<I8I8", 77, 0) } }   -- the host's turn
    g:restore(s)
    assert.same(before, cpu:fpu())
    assert.same(r[1], twice(g, cpu, s, 1)[1])
  end)

  it("debug registers", function()
    local g, cpu = H.moded("long", [[
      mov rax, dr0
      mov rbx, dr7
      mov rcx, 0x123000
      mov dr0, rcx
      mov rcx, 0x400         ; dr7: nothing enabled
      mov dr7, rcx
      hlt]])
    local s = g:snapshot()
    local r = twice(g, cpu, s, 3)
    assert.equals(0, r[1].rax)
    assert.same(r[1], r[2])
    assert.same(r[1], r[3])
    g:restore(s)   -- twice in a row: nothing ran in between
    assert.same(r[1], twice(g, cpu, s, 1)[1])
  end)

  -- (the soft backend's CPU has no XSAVE: xgetbv is #UD there)
  it("XCR0 (xsetbv) #kvm", function()
    local g, cpu = H.moded("long", [[
      mov rax, cr4
      or rax, 1 << 18        ; OSXSAVE
      mov cr4, rax
      xor ecx, ecx
      xgetbv
      mov r8, rax            ; the old XCR0
      mov eax, 3             ; x87 and SSE
      xor edx, edx
      xsetbv
      hlt]])
    local s = g:snapshot()
    local r = twice(g, cpu, s, 3)
    assert.equals(1, r[1].r8)
    assert.same(r[1], r[2])
    assert.same(r[1], r[3])
  end)

  it("MSRs and the kernel GS base (wrmsr, swapgs)", function()
    local g, cpu = H.moded("long", [[
      mov ecx, 0xc0000084    ; SFMASK
      rdmsr
      mov r8, rax
      mov eax, 0x700
      xor edx, edx
      wrmsr
      mov ecx, 0xc0000102    ; KERNEL_GS_BASE
      rdmsr
      mov r9, rax
      swapgs                 ; GS base <-> KERNEL_GS_BASE
      hlt]])
    cpu:msr(0xc0000102, 0x5000)
    local s = g:snapshot()
    local r = twice(g, cpu, s, 3)
    assert.equals(0, r[1].r8)
    assert.equals(0x5000, r[1].r9)
    assert.same(r[1], r[2])
    assert.same(r[1], r[3])
    assert.equals(0x5000, cpu:msr(0xc0000102))
    cpu:msr(0xc0000084, 0x100)   -- the host's turn
    g:restore(s)
    assert.equals(0, cpu:msr(0xc0000084))
  end)

  -- 32-bit paging without CR4.PSE: bit 7 of a page directory entry means
  -- nothing, the entry points at a page table, and the page walker sets the
  -- accessed bits of that table's entries; the restore must undo them.
  it("the accessed bits of a page table reached through a PDE with bit 7 set and CR4.PSE clear", function()
    local g = H.guest()
    local ram = mv.vmo(0x400000)
    g:map(0, ram)
    g:write(0x1000, H.asm("mov eax, [0x200000]\nhlt", 32))
    ram:write(0x200000, string.pack("<I4", 0x5eed))
    ram:write(0x10000, string.pack("<I4", 0x11000 | 0x83))   -- PDE 0: the table at 0x11000, present, writable, bit 7
    local pt = {}
    for i = 0, 1023 do pt[#pt + 1] = string.pack("<I4", i * 0x1000 | 0x3) end
    ram:write(0x11000, table.concat(pt))                        -- the first 4 MiB, identity
    local cpu = g:vcpu{ entry = 0x1000, mode = "protected" }
    local sr = cpu:sregs()
    cpu:write_sregs{ cr3 = 0x10000, cr4 = 0, cr0 = sr.cr0 | 0x80000000 }
    local tables = ram:read(0x10000, 0x2000)
    local s = g:snapshot()
    for round = 1, 2 do
      assert.equals("hlt", cpu:run{ timeout_ms = 5000 }.type, "round " .. round)
      assert.equals(0x5eed, cpu.rax & 0xffffffff)
      if round == 1 then   -- (later rounds may find the translation in the TLB)
        assert.equals(0x23, ram:u32(0x11000 + 0x200 * 4) & 0x3f, "the walker set the data page's accessed bit")
      end
      g:restore(s)
      assert.is_true(tables == ram:read(0x10000, 0x2000), "round " .. round .. ": the page tables differ after restore")
    end
  end)

  -- Tables that point at themselves: every PML4 entry but the first names
  -- the PML4, so a walk that followed each entry would visit ~511^3 tables
  -- per restore on soft (whose dirty log walks the page tables).  Run in a
  -- child process under `timeout`, as a hang detector: each table is
  -- visited once per level, and 100 restores take milliseconds (without that,
  -- about a second each).
  it("of a guest whose page tables point at themselves, without hanging", function()
    local exe = os.getenv("MOONVISOR_EXE") or "build/moonvisor"
    local script = os.tmpname()
    files.write(script, ([[
      local mv = require "moonvisor"
      local g = mv.guest{ backend = %q }
      local ram = mv.vmo(0x400000)
      g:map(0, ram)
      g:write(0x1000, %q)
      local cpu = g:vcpu{ entry = 0x1000, mode = "long", tables = 0x300000 }
      local pml4 = cpu:sregs().cr3 & ~0xfff
      ram:write(pml4 + 8, string.pack("<I8", pml4 | 3):rep(511))
      local tables = ram:read(pml4, 0x1000)
      local s = g:snapshot()
      for _ = 1, 100 do
        assert(cpu:run{ timeout_ms = 5000 }.type == "hlt")
        assert(cpu.r15 == 0xbeef)
        g:restore(s)
        assert(ram:read(pml4, 0x1000) == tables and ram:u64(0x100000) == 0)
      end
      print("100 restores")
    ]]):format(H.backend, H.asm(scribbler, 64)), "snapshot_spec")
    local out, code = H.sh(("timeout 60 %s %s"):format(exe, script))
    os.remove(script)
    assert.equals(0, code, out)
    assert.matches("100 restores", out)
  end)

  for _, ring in ipairs{ true, false } do
  it(("pages written again after a restore, and dirty_pages sees every write (dirty ring %s)"):format(ring and "on" or "off"), function()
    local g = H.guest{ dirty_ring = ring }
    if H.kvm then
      local want = ring and os.getenv("MOONVISOR_DIRTY_RING") ~= "0" and mv.caps().dirty_log_ring > 0
      assert.equals(want and "ring" or "bitmap", g:mechanisms().dirty_log)
    end
    local ram = mv.vmo(0x10000)
    g:map(0, ram, { log_dirty = true })
    g:write(0x1000, H.asm("inc byte [0x3000]\nmov al, [0x3000]\nhlt"))
    local cpu = g:vcpu{ entry = 0x1000 }
    local s = g:snapshot()
    for round = 1, 4 do
      assert.equals("hlt", cpu:run{ timeout_ms = 5000 }.type)
      assert.equals(1, cpu.rax & 0xff, "round " .. round)
      assert.equals(1, ram:u8(0x3000))
      g:restore(s)
      assert.equals(0, ram:u8(0x3000))
    end
    g:dirty_pages(0)
    assert.equals("hlt", cpu:run{ timeout_ms = 5000 }.type)   -- writes the page again
    local seen = {}
    for _, a in ipairs(g:dirty_pages(0)) do seen[a] = true end
    assert.is_true(seen[0x3000], "the guest's write is not in dirty_pages")
    assert.same({}, g:dirty_pages(0))
  end)
  end
end)

describe("guest snapshots with the in-kernel irqchip #kvm", function()
  it("restore the MP state of a halted VCPU and the local APIC", function()
    local g = H.guest{ irqchip = true }
    g:map(0, mv.vmo(0x400000))
    -- long mode reaches the local APIC at 0xfee00000; with the in-kernel
    -- irqchip hlt stays inside KVM, so the port 0x80 write ends the runs
    g:write(0x1000, H.asm([[
      mov edi, 0xfee00000
      mov eax, [rdi + 0xd0]  ; LDR: the old value
      mov ebx, eax
      mov dword [rdi + 0xd0], 0x3000000
      out 0x80, al
      cli
      hlt]], 64))
    local cpu = g:vcpu{ entry = 0x1000, mode = "long", tables = 0x300000 }
    local s = g:snapshot()
    for round = 1, 3 do
      local e = cpu:run{ timeout_ms = 5000 }
      assert.equals("io", e.type, "round " .. round .. ": " .. tostring(e.vector))
      assert.equals(0, cpu.rbx, "round " .. round)
      assert.equals("timeout", cpu:run{ timeout_ms = 50 }.type)   -- halted
      g:restore(s)
    end
  end)
end)

-- mode = "user" is a sandbox (moonvisor.stubs declares it): a restore may
-- leave out the debug registers and XCR0 after runs that kept to it.  Its
-- system area is out of ring 3's reach, which lets the restore trust it
-- without the dirty log.  A guest that breaks out by running a ring-0 stub
-- rewritten through some other way must still be restored exactly: each
-- case below has the #UD stub rewritten to write DR0 (and jump to the
-- syscall entry's out, a clean exit), restores, has it rewritten to read
-- DR0, and expects the snapshot's 0.  (KVM only: the soft backend reports
-- exceptions itself and never runs the stubs.)
describe("guest snapshots of a user-mode sandbox #kvm", function()
  -- The guest (ram at 0, then whatever more_maps(g) maps), its VCPU, the
  -- #UD stub's address and the ring-0 code that writes (rbx = 0) or reads
  -- DR0 there.
  local function sandbox(ram, source, more_maps)
    local g = H.guest()
    g:map(0, ram)
    if more_maps then more_maps(g) end
    g:write(0x100000, H.asm("org 0x100000\n" .. source, 64))
    local cpu = g:vcpu{ entry = 0x100000, mode = "user", stack = 0x200000 }
    local syscall_at = cpu:msr(0xc0000082)
    local stub6 = mv.stubs.cpus[cpu].report - (32 * 16 + 7) + 6 * 16
    local function stub(body)
      local code = H.asm("bits 64\n" .. body, 64)
      return code .. "\xe9" .. string.pack("<i4", syscall_at - (stub6 + #code + 5))
    end
    return g, cpu, stub6, { [0] = stub("mov dr0, rdi"), [1] = stub("mov rax, dr0") }
  end

  -- Ring 3 copies the writer or reader from 0x180000/0x181000 to `to`.
  local function copier(to)
    return [[
      mov rsi, 0x180000
      test rbx, rbx
      jz copy
      mov rsi, 0x181000
copy: mov rdi, ]] .. to .. [[

      mov rcx, 64
      rep movsb              ; over the stub, from ring 3
      mov rdi, 0x5555
      ud2                    ; to the rewritten stub, at ring 0]]
  end

  -- Runs the writer, restores, runs the reader: DR0 as the reader saw it.
  local function escape(g, cpu, before_run)
    local s = g:snapshot()
    if before_run then before_run(0) end
    assert.equals("syscall", cpu:run{ timeout_ms = 5000 }.type)   -- DR0 = 0x5555 now
    g:restore(s)
    cpu.rbx = 1
    if before_run then before_run(1) end
    assert.equals("syscall", cpu:run{ timeout_ms = 5000 }.type)
    return cpu.rax
  end

  it("restore the debug registers a guest changed through stubs its page tables let it rewrite", function()
    local g, cpu, stub6, code = sandbox(mv.vmo(0x400000), "hlt")
    g:write(0x180000, code[0])
    g:write(0x181000, code[1])
    -- the host maps the 2 MiB page with the system area user-writable (as
    -- mode "user" did before it split that page), then declares again
    local pd0 = cpu:sregs().cr3 + 0x2000
    g:u64(pd0 + 8 * (stub6 >> 21), (stub6 & ~0x1fffff) | 0xe7)
    mv.stubs.declare_sandbox(cpu, stub6 - 6 * 16)
    g:write(0x100000, H.asm("org 0x100000\n" .. copier(stub6), 64))
    assert.equals(0, escape(g, cpu), "DR0 was not restored")
  end)

  it("restore the debug registers a guest changed through a second mapping of the stubs' memory", function()
    local ram = mv.vmo(0x400000)
    -- the same bytes again, 4 MiB up: user-writable in mode "user"'s tables
    local g, cpu, stub6, code = sandbox(ram, "hlt", function(g) g:map(0x400000, ram) end)
    g:write(0x180000, code[0])
    g:write(0x181000, code[1])
    g:write(0x100000, H.asm("org 0x100000\n" .. copier(0x400000 + stub6), 64))
    assert.equals(0, escape(g, cpu), "DR0 was not restored")
  end)

  it("restore the debug registers a guest changed through the frame the CPU pushed over a stub", function()
    local g, cpu, stub6 = sandbox(mv.vmo(0x400000), "hlt")
    local syscall_at = cpu:msr(0xc0000082)
    -- the ring-0 stack (the TSS's RSP0) just above the #UD stub: the frame
    -- of a #UD from ring 3 puts the old RSP at the stub's first byte
    local tss = cpu:sregs().tr.base
    g:write(tss + 4, string.pack("<I8", stub6 + 16))
    mv.stubs.declare_sandbox(cpu, stub6 - 6 * 16)
    -- an RSP that is 8 bytes of code: mov dr0, rdi (or mov rax, dr0); jmp to the syscall entry's out
    local function rsp_code(op)
      return string.unpack("<i8", op .. "\xe9" .. string.pack("<i4", syscall_at - (stub6 + 8)))
    end
    g:write(0x100000, H.asm(([[
      org 0x100000
      mov rdi, 0x5555
      mov rsp, %d
      test rbx, rbx
      jz go
      mov rsp, %d
go:   ud2]]):format(rsp_code("\x0f\x23\xc7"), rsp_code("\x0f\x21\xc0")), 64))
    assert.equals(0, escape(g, cpu), "DR0 was not restored")
  end)

  it("restore the debug registers a guest changed through a stub the host rewrote between runs", function()
    local g, cpu, stub6, code = sandbox(mv.vmo(0x400000), "mov rdi, 0x5555\nud2")
    assert.equals(0, escape(g, cpu, function(which) g:write(stub6, code[which]) end), "DR0 was not restored")
  end)

  it("restore the debug registers a guest changed through a stub the host rewrote during the run", function()
    local g, cpu, stub6, code = sandbox(mv.vmo(0x400000), [[
      mov eax, 1
      syscall                ; the host rewrites the stub, and the run goes on
      mov rdi, 0x5555
      ud2]])
    -- the first system call's exit goes to a handler that rewrites the stub
    -- and withdraws: the run goes on to the stub and ends at its jump's exit
    local rewrites = 0
    local function rewrite_at_syscall()
      local t
      t = g:trap("io", 0xef, 1, function()
        rewrites = rewrites + 1
        g:write(stub6, code[cpu.rbx])
        t:remove()
      end)
    end
    assert.equals(0, escape(g, cpu, rewrite_at_syscall), "DR0 was not restored")
    assert.equals(2, rewrites)
  end)

  it("set only XSAVE and the MSRs in a restore after runs that kept to it (strace)", function()
    local _, found = H.sh("command -v strace")
    assert.equals(0, found, "strace is one of the Debian packages make deps installs")
    local log = os.tmpname()
    local exe = os.getenv("MOONVISOR_EXE") or "build/moonvisor"
    local out, code = H.sh(("strace -f -o %s -e trace=ioctl,openat %s bench/counts.lua restore-user 20"):format(log, exe))
    assert.equals(0, code, out)
    local f = assert(io.open(log))
    local on, restores, names = false, 0, {}
    for line in f:lines() do
      if line:find('moonvisor-mark-restore-begin"', 1, true) then
        on, restores = true, restores + 1
      elseif line:find('moonvisor-mark-restore-end"', 1, true) then
        on = false
      elseif on and line:find("ioctl(", 1, true) and not line:find("resumed>", 1, true) then
        local name = line:match("ioctl%(%d+, ([%w_]+)")
        names[name] = (names[name] or 0) + 1
      end
    end
    f:close()
    os.remove(log)
    assert.equals(20, restores)
    assert.same({ KVM_SET_XSAVE = 20, KVM_SET_MSRS = 20 }, names)
  end)

  it("stay exact over many system calls", function()
    local g = H.guest()
    g:map(0, mv.vmo(0x400000))
    g:write(0x100000, H.asm([[
      org 0x100000
      movq rax, xmm2
      mov rbx, rax
      add rax, 1
      movq xmm2, rax
      mov eax, 1
      syscall]], 64))
    local cpu = g:vcpu{ entry = 0x100000, mode = "user", stack = 0x200000 }
    local s = g:snapshot()
    for _ = 1, 20 do
      assert.equals("syscall", cpu:run{ timeout_ms = 5000 }.type)
      assert.equals(0, cpu.rbx)
      g:restore(s)
    end
  end)
end)
