-- dev_cmos_spec.lua - moonvisor.dev.cmos, the CMOS RAM and RTC at 0x70/0x71:
-- time in BCD and binary, 12/24-hour, status registers A-D, the NMI bit of
-- the index, NVRAM round-trip and the memory-size bytes.
local H = require "helpers"
local cmos_mod = require "moonvisor.dev.cmos"

-- Saturday 2024-03-09 21:05:59 UTC
local function fixed() return { year = 2024, month = 3, day = 9, hour = 21, min = 5, sec = 59, wday = 7 } end

-- A guest that reads CMOS register `idx` into [di++] for each index given
-- (after writing register B with `regb` when given).
local function reader(indexes, regb)
  local src = { "cld", "xor ax, ax", "mov es, ax", "mov di, 0x3000" }
  if regb then
    src[#src + 1] = "mov al, 0x0b\nout 0x70, al\nmov al, " .. regb .. "\nout 0x71, al"
  end
  for _, i in ipairs(indexes) do
    src[#src + 1] = ("mov al, 0x%02x\nout 0x70, al\nin al, 0x71\nstosb"):format(i)
  end
  src[#src + 1] = "hlt"
  return table.concat(src, "\n")
end

local TIME = { 0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32 }

local function run(source, opts)
  local g, cpu = H.real(source)
  local c = cmos_mod.new(g, opts or { clock = fixed })
  assert.equals("hlt", cpu:enter().type)
  return g, c
end

describe("cmos clock", function()
  it("reads the time in BCD, 24-hour, by default", function()
    local g = run(reader(TIME))
    assert.same({ 0x59, 0x05, 0x21, 0x07, 0x09, 0x03, 0x24, 0x20 }, { g:read(0x3000, 8):byte(1, 8) })
  end)

  it("reads the time in binary when register B bit 2 is set", function()
    local g = run(reader(TIME, 0x06))
    assert.same({ 59, 5, 21, 7, 9, 3, 24, 20 }, { g:read(0x3000, 8):byte(1, 8) })
  end)

  it("reads 12-hour time with bit 7 for PM when register B bit 1 is clear", function()
    local g = run(reader({ 0x04 }, 0x00))
    assert.equals(0x89, g:u8(0x3000))
    local g2 = run(reader({ 0x04 }, 0x04))      -- binary, 12-hour
    assert.equals(0x89, g2:u8(0x3000))
    local c = cmos_mod.new(H.guest(), { clock = function() return { hour = 0, min = 0, sec = 0, year = 2000, month = 1, day = 1, wday = 7 } end })
    c:set(0x0b, 0x00)
    assert.equals(0x12, c:get(0x04))              -- midnight is 12 AM
  end)

  it("follows the clock function on every read", function()
    local t = fixed()
    local c = cmos_mod.new(H.guest(), { clock = function() return t end })
    assert.equals(0x59, c:get(0x00))
    t.sec = 0
    assert.equals(0x00, c:get(0x00))
  end)

  it("uses the host's UTC clock by default", function()
    local c = cmos_mod.new(H.guest())
    c:set(0x0b, 0x06)
    local before = os.date("!*t")
    local year = c:get(0x09) + 100 * c:get(0x32)
    assert.is_true(year == before.year or year == before.year + 1)
  end)

  it("ignores writes to the time registers and counts them", function()
    local g, c = run("mov al, 0x00\nout 0x70, al\nmov al, 0x11\nout 0x71, al\nin al, 0x71\nmov [0x3000], al\nhlt")
    assert.equals(0x59, g:u8(0x3000))
    assert.equals(1, c:stats().time_writes)
  end)
end)

describe("cmos status registers", function()
  it("read A without UIP, B as written, C as 0 and D as valid RAM", function()
    local g = run(reader({ 0x0a, 0x0b, 0x0c, 0x0d }, 0x12))
    assert.same({ 0x26, 0x12, 0x00, 0x80 }, { g:read(0x3000, 4):byte(1, 4) })
  end)

  it("never set UIP, and keep D read-only", function()
    local c = cmos_mod.new(H.guest())
    c:set(0x0a, 0xa6)
    assert.equals(0x26, c:get(0x0a))
    c:set(0x0d, 0x00)
    assert.equals(0x80, c:get(0x0d))
  end)
end)

describe("cmos index", function()
  it("masks the NMI bit off the index and remembers it", function()
    local g, c = run([[
      mov al, 0x8d         ; NMI off, register D
      out 0x70, al
      in al, 0x71
      mov [0x3000], al
      in al, 0x70          ; the index port is write-only
      mov [0x3001], al
      hlt]])
    assert.equals(0x80, g:u8(0x3000))
    assert.equals(0xff, g:u8(0x3001))
    assert.is_true(c.nmi_disabled)
    assert.equals(0x0d, c:stats().index)
  end)
end)

describe("cmos NVRAM", function()
  it("round-trips bytes 0x0E-0x7F written by the guest (but the century at 0x32)", function()
    local g, c = run([[
      mov cx, 0x0e
    fill:
      mov al, cl
      out 0x70, al
      xor al, 0xa5
      out 0x71, al
      inc cx
      cmp cx, 0x80
      jne fill
      cld
      xor ax, ax
      mov es, ax
      mov di, 0x3000
      mov cx, 0x0e
    back:
      mov al, cl
      out 0x70, al
      in al, 0x71
      stosb
      inc cx
      cmp cx, 0x80
      jne back
      hlt]])
    local got = g:read(0x3000, 0x80 - 0x0e)
    for i = 0x0e, 0x7f do
      local want = i == 0x32 and 0x20 or i ~ 0xa5    -- 0x32 is the clock's century
      assert.equals(want, got:byte(i - 0x0e + 1), ("index 0x%x"):format(i))
    end
    assert.equals(0x0f ~ 0xa5, c:get(0x0f))
    assert.equals(0x72, c:stats().writes)
  end)

  it("keeps the alarm registers as RAM", function()
    local c = cmos_mod.new(H.guest(), { clock = fixed })
    c:set(0x01, 0x30)
    c:set(0x05, 0x12)
    assert.equals(0x30, c:get(0x01))
    assert.equals(0x12, c:get(0x05))
  end)

  it("is reachable with one 16-bit access (index then data)", function()
    local g = run("mov ax, 0x420e\nout 0x70, ax\nmov al, 0x0e\nout 0x70, al\nin al, 0x71\nmov [0x3000], al\nhlt")
    assert.equals(0x42, g:u8(0x3000))
  end)
end)

describe("cmos memory size", function()
  local function word(c, lo) return c:get(lo) | (c:get(lo + 1) << 8) end

  it("fills base, extended and above-16M sizes from mem_size", function()
    local c = cmos_mod.new(H.guest(), { mem_size = 48 * 1024 * 1024 })
    assert.equals(640, word(c, 0x15))
    assert.equals(47 * 1024, word(c, 0x17))
    assert.equals(47 * 1024, word(c, 0x30))
    assert.equals((48 - 16) * 16, word(c, 0x34))
  end)

  it("caps the 16-bit fields and handles small guests", function()
    local big = cmos_mod.new(H.guest(), { mem_size = 8 * 1024 * 1024 * 1024 })
    assert.equals(0xffff, word(big, 0x17))
    assert.equals(0xffff, word(big, 0x34))
    local small = cmos_mod.new(H.guest(), { mem_size = 512 * 1024 })
    assert.equals(512, word(small, 0x15))
    assert.equals(0, word(small, 0x17))
    assert.equals(0, word(small, 0x34))
  end)

  it("are what the guest reads", function()
    local g = run(reader({ 0x15, 0x16, 0x34, 0x35 }), { mem_size = 32 * 1024 * 1024 })
    assert.same({ 0x80, 0x02, 0x00, 0x01 }, { g:read(0x3000, 4):byte(1, 4) })
  end)

  it("are left zero without mem_size", function()
    local c = cmos_mod.new(H.guest())
    assert.equals(0, word(c, 0x15))
  end)
end)

describe("cmos object", function()
  it("removes its trap", function()
    local g, cpu = H.real("in al, 0x71\nhlt")
    local c = cmos_mod.new(g)
    c:remove()
    assert.equals("io", cpu:enter().type)
  end)

  it("refuses bad options", function()
    assert.has_error(function() cmos_mod.new(H.guest(), { clock = 5 }) end,
      "cmos.new: clock must be a function returning a date table")
    assert.has_error(function() cmos_mod.new(H.guest(), { mem_size = 1.5 }) end,
      "cmos.new: mem_size must be a byte count, got 1.5")
  end)
end)
