-- snapshot_spec.lua - g:snapshot() / g:restore(s): byte-identical memory
-- and identical registers after the guest scribbles, dirty-page restores,
-- older snapshots after newer ones, files with checksums.
local mv = require "moonvisor"
local H = require "helpers"

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
