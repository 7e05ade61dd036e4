-- dev_fw_cfg_spec.lua - moonvisor.dev.fw_cfg item by item: the selector and
-- data ports, the signature and ID, reads past an item's end and of invalid
-- selectors, the file directory, DMA (read, skip, select, write, errors) and
-- what the guest sees through its io ports.
local H = require "helpers"
local mv = require "moonvisor"
local fwcfg = require "moonvisor.dev.fw_cfg"

local K = fwcfg.KEY

local function guest_with_ram()
  local g = H.guest()
  g:map(0, mv.vmo(0x100000))
  return g
end

local function read_item(fw, key, n)
  fw:select(key)
  local out = {}
  for i = 1, n do out[i] = string.char(fw:read_byte()) end
  return table.concat(out)
end

describe("fw_cfg", function()
  it("has the signature \"QEMU\" at key 0 and ID 3 (traditional + DMA), 1 without DMA", function()
    local fw = fwcfg.new(nil)
    assert.equals("QEMU", read_item(fw, K.SIGNATURE, 4))
    assert.equals(string.pack("<I4", 3), read_item(fw, K.ID, 4))
    assert.equals(string.pack("<I4", 1), read_item(fwcfg.new(nil, { dma = false }), K.ID, 4))
  end)

  it("reads an item byte by byte from the start after each select, then zeros past its end", function()
    local fw = fwcfg.new(nil)
    fw:add_u16(K.NB_CPUS, 4)
    fw:add_u64(K.RAM_SIZE, 0x8000000)
    fw:add_string(K.CMDLINE_DATA, "a=1")
    assert.equals("\4\0", read_item(fw, K.NB_CPUS, 2))
    assert.equals("\4\0\0\0", read_item(fw, K.NB_CPUS, 4))
    assert.equals(string.pack("<I8", 0x8000000), read_item(fw, K.RAM_SIZE, 8))
    assert.equals("a=1\0\0\0", read_item(fw, K.CMDLINE_DATA, 6))
    assert.equals("a=1\0", fw:item(K.CMDLINE_DATA))
    assert.equals(4, fw:stats().offset)   -- the item has 4 bytes: reads past them do not move on
  end)

  it("keeps architecture-local items (bit 15) apart from the generic ones", function()
    local fw = fwcfg.new(nil)
    fw:add_u32(K.E820_TABLE, 7)           -- 0x8003
    fw:add_u32(0x0003, 9)                 -- RAM_SIZE's slot
    assert.equals(string.pack("<I4", 7), fw:item(0x8003))
    assert.equals(string.pack("<I4", 9), fw:item(0x0003))
  end)

  it("selects nothing for an index at or past 0x20 + file_slots: reads are zero", function()
    local fw = fwcfg.new(nil)
    assert.is_false(fw:select(0x40))
    assert.is_false(fw:select(0x3fff))
    assert.is_false(fw:select(0xffff))
    assert.equals(0, fw:read_byte())
    assert.is_true(fw:select(0x3f))       -- the last file slot: valid, empty
    assert.equals("\0\0", read_item(fw, 0x3f, 2))
    assert.equals(3, fw:stats().invalid_selects)
    assert.is_false(fwcfg.new(nil, { file_slots = 0x10 }):select(0x30))
  end)

  it("lists files in a directory sorted by name, with selectors from 0x20 in that order", function()
    local fw = fwcfg.new(nil)
    assert.equals(0x20, fw:add_file("opt/b", "BBBB"))
    assert.equals(0x20, fw:add_file("etc/a", "xy"))      -- sorts first: takes 0x20
    local dir = fw:item(K.FILE_DIR)
    assert.equals(4 + 2 * 64, #dir)
    assert.equals(2, string.unpack(">I4", dir))
    local size, sel, res = string.unpack(">I4I2I2", dir, 5)
    assert.same({ 2, 0x20, 0 }, { size, sel, res })
    assert.equals("etc/a" .. string.rep("\0", 51), dir:sub(13, 68))
    size, sel = string.unpack(">I4I2", dir, 69)
    assert.same({ 4, 0x21 }, { size, sel })
    assert.equals("BBBB", read_item(fw, 0x21, 4))
    assert.same({ { name = "etc/a", select = 0x20, size = 2 }, { name = "opt/b", select = 0x21, size = 4 } }, fw:files())
    assert.equals("xy", (fw:file("etc/a")))
  end)

  it("refuses file names that do not fit, a full directory and bad items", function()
    local fw = fwcfg.new(nil, { file_slots = 1 })
    fw:add_file("one", "")
    assert.has_error(function() fw:add_file("two", "") end, "fw_cfg:add_file: two: all 1 file slots are used")
    assert.has_error(function() fw:add_file(("n"):rep(56), "") end,
      "fw_cfg:add_file: name must be 1-55 bytes without NUL, got " .. ("n"):rep(56))
    assert.has_error(function() fw:add(0x21, "") end, "fw_cfg:add: key 0x21 is past the last entry 0x20")
    assert.has_error(function() fw:add(0x10000, "") end, "fw_cfg:add: key must be a 16-bit integer, got 65536")
    assert.has_error(function() fw:add(1, 2) end, "fw_cfg:add: item data must be a string, got number")
  end)

  it("takes 16-bit writes at 0x510 or 0x511 as a select and byte reads at either as data", function()
    local fw = fwcfg.new(nil)
    fw:write(0x510, K.SIGNATURE, 2)
    assert.equals(0x51, fw:read(0x511, 1))
    assert.equals(0x45, fw:read(0x510, 1))
    fw:write(0x511, K.SIGNATURE, 2)
    assert.equals(0x51, fw:read(0x511, 1))
    fw:write(0x511, 0x99, 1)                 -- data writes do nothing
    assert.equals(0x45, fw:read(0x511, 1))
    assert.equals(0xffff, fw:read(0x510, 2)) -- not a valid access
    fw:write(0x510, 1, 4)                    -- neither: no select
    assert.equals(0x4d, fw:read(0x511, 1))
  end)

  it("reads \"QEMU CFG\" at the DMA ports, at any size and offset", function()
    local fw = fwcfg.new(nil)
    assert.equals(0x554d4551, fw:read(0x514, 4))
    assert.equals(0x47464320, fw:read(0x518, 4))
    assert.equals(0x51, fw:read(0x514, 1))
    assert.equals(0x4d45, fw:read(0x515, 2))
    assert.equals(0xffffff47, fw:read(0x51b, 4))   -- past the register: all-ones
  end)

  describe("DMA", function()
    local function desc(g, at, control, length, address)
      g:write(at, string.pack(">I4I4i8", control, length, address))
    end
    local function go(fw, at)   -- as the guest: high half, then low half (big-endian values)
      local function be(v) return string.unpack("<I4", string.pack(">I4", v)) end
      fw:write(0x514, be(at >> 32), 4)
      fw:write(0x518, be(at & 0xffffffff), 4)
    end

    it("selects and reads an item into guest memory, zero-filling past its end; control becomes 0", function()
      local g = guest_with_ram()
      local fw = fwcfg.new(g)
      fw:add_string(K.CMDLINE_DATA, "hello")
      g:write(0x2000, ("\xee"):rep(16))
      desc(g, 0x1000, (K.CMDLINE_DATA << 16) | 0x08 | 0x02, 10, 0x2000)
      go(fw, 0x1000)
      assert.equals("hello\0\0\0\0\0\xee", g:read(0x2000, 11))
      assert.equals(0, g:u32(0x1000))
      assert.equals(1, fw:stats().dma)
    end)

    it("skips, then reads on from the same offset; without read, skip or write the length is ignored", function()
      local g = guest_with_ram()
      local fw = fwcfg.new(g)
      fw:add(K.KERNEL_DATA, "0123456789")
      desc(g, 0x1000, (K.KERNEL_DATA << 16) | 0x08 | 0x04, 4, 0)
      go(fw, 0x1000)
      desc(g, 0x1000, 0x02, 3, 0x2000)
      go(fw, 0x1000)
      assert.equals("456", g:read(0x2000, 3))
      desc(g, 0x1000, 0, 3, 0x2000)
      go(fw, 0x1000)
      assert.equals(0, g:u32(0x1000))
      assert.equals("7", string.char(fw:read_byte()))
    end)

    it("sets the error bit for writes (no item is writable) and for memory that is not RAM", function()
      local g = guest_with_ram()
      local fw = fwcfg.new(g)
      desc(g, 0x1000, (K.SIGNATURE << 16) | 0x08 | 0x10, 4, 0x2000)
      go(fw, 0x1000)
      assert.equals(string.pack(">I4", 1), g:read(0x1000, 4))
      desc(g, 0x1000, (K.SIGNATURE << 16) | 0x08 | 0x02, 4, 0xf0000000)
      go(fw, 0x1000)
      assert.equals(string.pack(">I4", 1), g:read(0x1000, 4))
      desc(g, 0x1000, (0x3fff << 16) | 0x08 | 0x02, 0xffffffff, 0x80000)   -- 4 GiB of zeros into 1 MiB of RAM
      go(fw, 0x1000)
      assert.equals(string.pack(">I4", 1), g:read(0x1000, 4))
      assert.equals(3, fw:stats().dma_errors)
    end)

    it("survives a descriptor outside RAM: nothing happens, nothing raises", function()
      local g = guest_with_ram()
      local fw = fwcfg.new(g)
      go(fw, 0x7fff0000)
      go(fw, 0xfffffffffff0)
      assert.equals(2, fw:stats().dma_errors)
    end)

    it("runs only on the low half, and only for 4-byte writes", function()
      local g = guest_with_ram()
      local fw = fwcfg.new(g)
      desc(g, 0x1000, (K.SIGNATURE << 16) | 0x08 | 0x02, 4, 0x2000)
      fw:write(0x518, 0x00100000, 2)
      fw:write(0x514, 0, 4)
      assert.equals(0, fw:stats().dma)
      go(fw, 0x1000)
      assert.equals("QEMU", g:read(0x2000, 4))
    end)
  end)

  it("answers a guest's port accesses: select with out dx, ax and read with in al, dx", function()
    local g, cpu = H.real([[
      cld
      xor ax, ax
      mov es, ax
      mov di, 0x3000
      mov dx, 0x510
      mov ax, 0
      out dx, ax
      inc dx
      mov cx, 4
      rep insb
      mov dx, 0x514
      in eax, dx
      stosd
      hlt]])
    fwcfg.new(g)
    assert.equals("hlt", cpu:enter().type)
    assert.equals("QEMUQEMU", g:read(0x3000, 8))
  end)

  it("never raises on random port accesses", function()
    local g = guest_with_ram()
    local fw = fwcfg.new(g)
    fw:add_file("etc/x", ("x"):rep(100))
    math.randomseed(7)
    for _ = 1, 5000 do
      local port = 0x50e + math.random(0, 15)
      local size = ({ 1, 2, 4 })[math.random(3)]
      if math.random(2) == 1 then fw:write(port, math.random(0, 0xffffffff), size)
      else
        local v = fw:read(port, size)
        assert.is_true(v >= 0 and v < (1 << (8 * size)))
      end
    end
  end)
end)
