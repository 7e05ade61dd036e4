-- dev_misc_spec.lua - the small device models: moonvisor.dev.i8042 (status,
-- self-test, command byte, reset through 0xFE and 0xD1), moonvisor.dev.misc
-- (POST codes at 0x80, PCI configuration with no devices, 0xCF9 reset) and
-- moonvisor.dev's unclaimed-access counting run loop.
local H = require "helpers"
local dev = require "moonvisor.dev"
local i8042 = require "moonvisor.dev.i8042"
local misc_mod = require "moonvisor.dev.misc"

local PROLOGUE = "cld\nxor ax, ax\nmov es, ax\nmov di, 0x3000\n"

describe("i8042", function()
  it("answers self-test with 0x55 and sets the system flag", function()
    local g, cpu = H.real(PROLOGUE .. [[
      in al, 0x64
      stosb
      in al, 0x60          ; empty: 0
      stosb
      mov al, 0xaa
      out 0x64, al
      in al, 0x64
      stosb
      in al, 0x60
      stosb
      in al, 0x64
      stosb
      hlt]])
    local k = i8042.new(g)
    k.cmdbyte = 0x40                   -- system flag clear, as before the BIOS's self-test
    assert.equals("hlt", cpu:enter().type)
    -- status: unlocked; then OBF + system + command; then the buffer drained
    assert.same({ 0x10, 0x00, 0x1d, 0x55, 0x1c }, { g:read(0x3000, 5):byte(1, 5) })
  end)

  it("reads and writes the command byte with 0x20 and 0x60", function()
    local g, cpu = H.real(PROLOGUE .. [[
      mov al, 0x20
      out 0x64, al
      in al, 0x60
      stosb
      mov al, 0x60
      out 0x64, al
      mov al, 0x61
      out 0x60, al
      mov al, 0x20
      out 0x64, al
      in al, 0x60
      stosb
      hlt]])
    local k = i8042.new(g)
    assert.equals("hlt", cpu:enter().type)
    assert.same({ 0x45, 0x61 }, { g:read(0x3000, 2):byte(1, 2) })
    assert.equals(0x61, k:stats().command_byte)
  end)

  it("pulses the reset line on command 0xFE: on_reset is called and recorded", function()
    local g, cpu = H.real([[
      kbwait:
      in al, 0x64
      test al, 2           ; input buffer full?
      jnz kbwait
      mov al, 0xfe
      out 0x64, al
      jmp $]])
    local seen
    local k = i8042.new(g, { on_reset = function(cause, c)
      seen = cause
      c:kick()                         -- stop the guest, as a VMM would to reset it
    end })
    local e = cpu:enter()
    assert.equals("kick", e.type)
    assert.equals("0xfe", seen)
    assert.equals(1, k.resets)
    assert.equals("0xfe", k.last_reset)
  end)

  it("resets when 0xD1 writes an output port with bit 0 clear, not when set", function()
    local g, cpu = H.real([[
      mov al, 0xd1
      out 0x64, al
      mov al, 0xdf         ; A20 on, reset high
      out 0x60, al
      mov al, 0xd1
      out 0x64, al
      mov al, 0x00         ; A20 off, reset low
      out 0x60, al
      hlt]])
    local causes = {}
    local k = i8042.new(g, { on_reset = function(cause) causes[#causes + 1] = cause end })
    assert.equals("hlt", cpu:enter().type)
    assert.same({ "0xd1" }, causes)
    assert.is_false(k.a20)
  end)

  it("ignores the odd pulse commands and acknowledges keyboard commands", function()
    local k = i8042.new(H.guest())
    k:write(0x64, 0xff)
    assert.equals(0, k.resets)
    k:write(0x60, 0xff)                -- keyboard reset
    assert.equals(0x01, k:read(0x64) & 1)
    assert.equals(0xfa, k:read(0x60))
    assert.equals(0xaa, k:read(0x60))
    assert.equals(0x00, k:read(0x60))
  end)

  it("removes its traps", function()
    local g, cpu = H.real("in al, 0x64\nhlt")
    i8042.new(g):remove()
    assert.equals("io", cpu:enter().type)
  end)
end)

describe("POST port 0x80", function()
  it("records the codes written, in order, and reads back the last", function()
    local g, cpu = H.real(PROLOGUE .. [[
      mov al, 0x11
      out 0x80, al
      mov al, 0x22
      out 0x80, al
      in al, 0x80
      stosb
      hlt]])
    local hooked = {}
    local m = misc_mod.new(g, { on_post = function(code) hooked[#hooked + 1] = code end })
    assert.equals(nil, m:last_post())
    assert.equals("hlt", cpu:enter().type)
    assert.equals(0x22, m:last_post())
    assert.same({ 0x11, 0x22 }, m:post_codes())
    assert.same({ 0x11, 0x22 }, hooked)
    assert.equals(0x22, g:u8(0x3000))
  end)

  it("keeps only the last max_post codes", function()
    local m = misc_mod.new(H.guest(), { max_post = 3, pci = false })
    for i = 1, 5 do m:write(0x80, i) end
    assert.same({ 3, 4, 5 }, m:post_codes())
    assert.equals(5, m:stats().posts)
  end)
end)

describe("PCI configuration space", function()
  it("reads the 32-bit address register back and answers data reads with all-ones", function()
    local g, cpu = H.real(PROLOGUE .. [[
      mov dx, 0xcf8
      mov eax, 0x80001008
      out dx, eax
      in eax, dx
      stosd
      mov dx, 0xcfc
      in eax, dx
      stosd
      mov dx, 0xcfe
      in ax, dx
      stosw
      mov dx, 0xcff
      in al, dx
      stosb
      mov dx, 0xcfc
      mov eax, 0x12345678
      out dx, eax          ; ignored
      in eax, dx
      stosd
      mov dx, 0xcf8
      in al, dx            ; byte reads of the address register float
      stosb
      hlt]])
    local m = misc_mod.new(g)
    assert.equals("hlt", cpu:enter().type)
    local b = g:read(0x3000, 16)
    assert.equals(0x80001008, string.unpack("<I4", b, 1))
    assert.equals(0xffffffff, string.unpack("<I4", b, 5))
    assert.equals(0xffff, string.unpack("<I2", b, 9))
    assert.equals(0xff, b:byte(11))
    assert.equals(0xffffffff, string.unpack("<I4", b, 12))
    assert.equals(0xff, b:byte(16))
    assert.equals(0x80001008, m:pci_address())
    local s = m:stats()
    assert.equals(4, s.config_reads)
    assert.equals(1, s.config_writes)
  end)

  it("resets through 0xCF9 bit 2", function()
    local g, cpu = H.real("mov dx, 0xcf9\nmov al, 2\nout dx, al\nmov al, 6\nout dx, al\nhlt")
    local causes = {}
    local m = misc_mod.new(g, { on_reset = function(c) causes[#causes + 1] = c end })
    assert.equals("hlt", cpu:enter().type)
    assert.same({ "0xcf9" }, causes)
    assert.equals(1, m:stats().resets)
  end)

  it("can be left out", function()
    local g, cpu = H.real("mov dx, 0xcfc\nin eax, dx\nhlt")
    misc_mod.new(g, { pci = false })
    assert.equals("io", cpu:enter().type)
  end)
end)

describe("dev.run", function()
  it("counts unclaimed io and mem accesses by port and address and runs on to hlt", function()
    local g, cpu = H.real([[
      in al, 0x61
      out 0x61, al
      out 0x80, al         ; claimed by misc
      mov dx, 0x3f8
      out dx, al
      mov ax, 0x2000
      mov ds, ax
      mov al, [0x10]
      mov [0x10], al
      mov bl, [0x10]
      hlt]])
    misc_mod.new(g)
    local e, u = dev.run(cpu)
    assert.equals("hlt", e.type)
    assert.same({ [0x61] = 2, [0x3f8] = 1 }, u.io)
    assert.same({ [0x20010] = 3 }, u.mem)
    assert.equals(6, u.total)
    assert.equals(3, u.reads)
    assert.equals(3, u.writes)
    assert.equals("io 0x61: 2\nio 0x3f8: 1\nmem 0x20010: 3", u:report())
  end)

  it("adds to a given counter, calls on_unclaimed and stops at the limit", function()
    local g, cpu = H.real("spin:\nin al, 0x64\njmp spin")
    local u = dev.unclaimed()
    local seen = 0
    local e = dev.run(cpu, { unclaimed = u, limit = 5, on_unclaimed = function(ex) seen = seen + 1; assert.equals(0x64, ex.port) end })
    assert.equals("io", e.type)
    assert.equals(5, u.io[0x64])
    assert.equals(5, seen)
    dev.run(cpu, { unclaimed = u, limit = 2 })
    assert.equals(7, u.total)
  end)

  it("returns other exits as they come, counting nothing for them", function()
    local g, cpu = H.real("in al, 0x71\nhlt")
    local u = dev.unclaimed()
    assert.is_false(u:count({ type = "hlt" }))
    require("moonvisor.dev.cmos").new(g)
    local e, u2 = dev.run(cpu)
    assert.equals("hlt", e.type)
    assert.equals(0, u2.total)
  end)
end)
