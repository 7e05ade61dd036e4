-- linux_spec.lua - moonvisor.linux: the Linux/x86 boot protocol.  The
-- protocol test kernel (build/guests/bzImage, from examples/guests/bzkernel*,
-- `make guests`) is booted through linux.boot on the backend under test and
-- reports what it found (boot_params, command line, initrd, e820, CPU mode,
-- segments) on COM1; its header is parsed; malformed bzImages are refused
-- with the file and the problem named, before guest memory is touched.
local H = require "helpers"
local files = require "moonvisor.files"
local mv = require "moonvisor"
local linux = require "moonvisor.linux"

local KERNEL = "build/guests/bzImage"
local exe = os.getenv("MOONVISOR_EXE") or "build/moonvisor"

local function slurp(p) return assert(files.read(p)) end

local function fnv1a(s)
  local h = 0x811c9dc5
  for i = 1, #s do h = ((h ~ s:byte(i)) * 0x01000193) & 0xffffffff end
  return h
end

-- Boots the test kernel in a guest with `mem` bytes of RAM (mapped by
-- linux.boot); returns the kernel's lines, the port 0xf4 value, the boot
-- description and the guest.
local function boot_test_kernel(opts)
  local g = H.guest()
  local out = {}
  require("moonvisor.dev.uart").new(g, { output = function(b) out[#out + 1] = b end })
  local poweroff
  g:trap("io", 0xf4, 1, function(e, cpu) poweroff = e.data cpu:kick() end)
  opts.kernel = opts.kernel or KERNEL
  opts.mem = opts.mem or (32 << 20)
  local boot, cpu = linux.boot(g, opts)
  local exit = cpu:run{ timeout_ms = 10000 }
  local lines = {}
  for l in table.concat(out):gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
  return lines, poweroff, boot, g, exit
end

local function find(lines, prefix)
  for _, l in ipairs(lines) do
    if l:sub(1, #prefix) == prefix then return l end
  end
  error("no line starting with " .. prefix .. " in:\n" .. table.concat(lines, "\n"), 2)
end

local function le(s, fmt, off) return (string.unpack("<" .. fmt, s, off + 1)) end

describe("linux.parse", function()
  it("reads the setup header of the built test kernel", function()
    local data = slurp(KERNEL)
    local h = linux.parse(data, KERNEL)
    assert.equals(0x020f, h.version)
    assert.equals("2.15", h.version_string)
    assert.equals("HdrS", h.header)
    assert.equals(0xaa55, h.boot_flag)
    assert.equals(4, h.setup_sects)
    assert.equals(5 * 512, h.setup_size)
    assert.equals(0x26c, h.header_end)
    assert.equals(1, h.loadflags & 1)                 -- LOADED_HIGH
    assert.equals(1, h.xloadflags & 1)                -- XLF_KERNEL_64
    assert.is_true(h.has_64)
    assert.equals(0x100000, h.pref_address)
    assert.equals(0x100000, h.code32_start)
    assert.equals(0, h.relocatable_kernel)
    assert.equals(2047, h.cmdline_size)
    assert.equals(#data - 5 * 512, h.kernel_size)
    assert.equals((h.kernel_size + 15) // 16, h.syssize)
    assert.is_true(h.init_size >= h.kernel_size)
    assert.equals(0, h.init_size % 4096)
  end)
end)

describe("linux.boot with the protocol test kernel", function()
  local initrd = "initrd\0\1\2\3" .. string.rep("0123456789abcdef", 300)

  it("enters at startup_64 in long mode; the kernel finds everything the protocol promises", function()
    local lines, poweroff, boot, g = boot_test_kernel{
      cmdline = "console=ttyS0 root=/dev/vda quiet mv.test=1", initrd = { name = "initrd", data = initrd } }
    finally(function() g:close() end)
    assert.equals(0, poweroff, table.concat(lines, "\n"))
    assert.equals("bzkernel: entered through the 64-bit boot protocol", lines[1])
    assert.equals("ok   load address: startup_64 at 0x00100200, linked at 0x00100200", find(lines, "ok   load address"))
    assert.equals("ok   boot_params: at 0x00007000", find(lines, "ok   boot_params"))
    assert.equals('ok   setup header: magic "HdrS", boot_flag 0xaa55, version 0x020f', find(lines, "ok   setup header"))
    assert.equals("ok   type_of_loader: 0xff", find(lines, "ok   type_of_loader"))
    assert.equals("ok   loadflags: 0x81 (LOADED_HIGH, CAN_USE_HEAP), heap_end_ptr 0xde00", find(lines, "ok   loadflags"))
    assert.equals('ok   cmdline: at 0x00020000, 43 bytes: "console=ttyS0 root=/dev/vda quiet mv.test=1"',
                  find(lines, "ok   cmdline"))
    assert.equals(('ok   initrd: at 0x%08x, %d bytes, first bytes "initrd\\x00\\x01\\x02\\x03012345", fnv1a 0x%08x')
                    :format(boot.initrd_addr, #initrd, fnv1a(initrd)), find(lines, "ok   initrd"))
    assert.equals("ok   e820: 3 entries", find(lines, "ok   e820:"))
    local e820 = {}
    for _, l in ipairs(lines) do if l:find("^info e820") then e820[#e820 + 1] = l end end
    assert.same({
      "info e820: 0x000000000-0x00009efff type 1",
      "info e820: 0x00009f000-0x0000fffff type 2",
      "info e820: 0x000100000-0x001ffffff type 1",
    }, e820)
    assert.equals("ok   e820 RAM at 1 MiB: yes", find(lines, "ok   e820 RAM at 1 MiB"))
    find(lines, "ok   e820 kernel in RAM: 0x00100000-")
    assert.equals("ok   long mode: EFER.LMA 1, CR0.PG 1, CR0.PE 1, CR4.PAE 1", find(lines, "ok   long mode"))
    assert.equals("ok   segments: cs 0x10, ds 0x18, es 0x18, ss 0x18", find(lines, "ok   segments"))
    assert.equals("ok   interrupts: off at entry (rflags 0x00000002)", find(lines, "ok   interrupts"))
    assert.equals("bzkernel: 13 checks, 0 failed", lines[#lines])
    for _, l in ipairs(lines) do assert.is_nil(l:find("^FAIL"), l) end
  end)

  it("describes the boot and fills the zero page as zero-page.rst lays it out", function()
    local lines, _, boot, g = boot_test_kernel{ cmdline = "hello", initrd = { data = initrd } }
    finally(function() g:close() end)
    assert.equals("bzkernel: 13 checks, 0 failed", lines[#lines])
    assert.equals(0x7000, boot.zero_page)
    assert.equals(0x100000, boot.kernel_addr)
    assert.equals(0x100200, boot.entry)
    assert.equals("long", boot.mode)
    assert.equals(0x20000, boot.cmdline_addr)
    assert.equals(0, boot.initrd_addr % 4096)
    assert.is_true(boot.initrd_addr >= boot.kernel_addr + boot.init_size)
    assert.is_true(boot.initrd_addr + #initrd <= 32 << 20)
    local zp = g:read(boot.zero_page, 4096)
    local image = slurp(KERNEL)
    assert.equals(image:sub(0x1f2, 0x20f), zp:sub(0x1f2, 0x20f))   -- the header copy, up to type_of_loader
    assert.equals("HdrS", zp:sub(0x203, 0x206))
    assert.equals(0xff, le(zp, "B", 0x210))                       -- type_of_loader
    assert.equals(0x81, le(zp, "B", 0x211))                       -- LOADED_HIGH | CAN_USE_HEAP
    assert.equals(0x100000, le(zp, "I4", 0x214))                  -- code32_start
    assert.equals(boot.initrd_addr, le(zp, "I4", 0x218))          -- ramdisk_image
    assert.equals(#initrd, le(zp, "I4", 0x21c))                   -- ramdisk_size
    assert.equals(0x20000, le(zp, "I4", 0x228))                   -- cmd_line_ptr
    assert.equals(0, le(zp, "I4", 0x0c0) | le(zp, "I4", 0x0c4) | le(zp, "I4", 0x0c8))   -- ext_*
    assert.equals(3, le(zp, "B", 0x1e8))                          -- e820_entries
    local addr, size, ty = string.unpack("<I8I8I4", zp, 0x2d0 + 2 * 20 + 1)
    assert.same({ 0x100000, (32 << 20) - 0x100000, 1 }, { addr, size, ty })
    assert.equals("hello\0", g:read(0x20000, 6))
    assert.equals(initrd, g:read(boot.initrd_addr, #initrd))
    assert.is_true(image:sub(5 * 512 + 1, 5 * 512 + 0x400) == g:read(0x100000, 0x400))   -- the entry code
  end)

  it("enters at startup_32 in protected mode with entry = \"32\"", function()
    local lines, poweroff, boot, g = boot_test_kernel{ entry = "32", cmdline = "thirty-two" }
    finally(function() g:close() end)
    assert.equals(0, poweroff, table.concat(lines, "\n"))
    assert.equals("protected", boot.mode)
    assert.equals(0x100000, boot.entry)
    assert.equals("bzkernel: entered through the 32-bit boot protocol", lines[1])
    assert.equals('ok   cmdline: at 0x00020000, 10 bytes: "thirty-two"', find(lines, "ok   cmdline"))
    assert.equals("info initrd: none", find(lines, "info initrd"))
    assert.equals("ok   protected mode: CR0.PE 1, CR0.PG 0, EFER.LMA 0 (cr0 0x00000031)", find(lines, "ok   protected mode"))
    assert.equals("ok   segments: cs 0x10, ds 0x18, es 0x18, ss 0x18", find(lines, "ok   segments"))
    assert.equals("bzkernel: 12 checks, 0 failed", lines[#lines])
  end)

  it("uses RAM the guest already has, and mem caps what the e820 map reports", function()
    local g <close> = H.guest()
    g:map(0, mv.vmo(0xA0000))
    g:map(0x100000, mv.vmo(8 << 20))
    local boot = linux.boot(g, { kernel = KERNEL, vcpu = false, mem = 4 << 20 })
    assert.same({ { addr = 0, size = 0x9f000, type = 1 }, { addr = 0x9f000, size = 0x61000, type = 2 },
                  { addr = 0x100000, size = 0x300000, type = 1 } }, boot.e820)
    assert.equals(1, #g:mappings() - 1)
    assert.equals("function", type(boot.vcpu))
  end)

  it("loads a relocatable kernel at an aligned address when pref_address is not RAM", function()
    local data = slurp(KERNEL)
    data = data:sub(1, 0x234) .. "\1" .. data:sub(0x236, 0x258) .. string.pack("<I8", 0x40000000) .. data:sub(0x261)
    local g <close> = H.guest()
    local boot = linux.boot(g, { kernel = { name = "reloc", data = data }, mem = 16 << 20, vcpu = false })
    assert.equals(0x200000, boot.kernel_addr)
    assert.equals(0x200200, boot.entry)
  end)

  it("examples/linux.lua boots it with the device models and powers off with status 0", function()
    local out, err = os.tmpname(), os.tmpname()
    local ok, _, code = os.execute(("MOONVISOR_BACKEND=%s %s examples/linux.lua --mem 64M --cmdline 'console=ttyS0' --run 'echo hi' --initrd examples/guests/mbmodule.txt --stats >%s 2>%s </dev/null")
      :format(H.backend, exe, out, err))
    local o, e = slurp(out), slurp(err)
    os.remove(out) os.remove(err)
    assert.equals(0, ok and 0 or code, o .. e)
    assert.matches('cmdline: at 0x00020000, 37 bytes: "console=ttyS0 moonvisor.run=\\x22echo hi\\x22"', o, 1, true)
    assert.matches("bzkernel: 13 checks, 0 failed\n", o, 1, true)
    assert.matches("power-off through port 0xf4 with 0", e, 1, true)
    assert.matches("linux: 0 accesses nothing claimed", e, 1, true)
    assert.matches("trap io 0x3f8%+0x8: %d+ calls", e)
  end)
end)

describe("linux.boot with a malformed bzImage", function()
  local good = slurp(KERNEL)

  local function patch(off, bytes) return good:sub(1, off) .. bytes .. good:sub(off + #bytes + 1) end

  -- Boots `data` into a guest with 4 MiB of patterned RAM; returns the error
  -- and whether guest memory stayed as it was.
  local function refuse(data, opts)
    local g <close> = H.guest()
    local ram = mv.vmo(4 << 20)
    g:map(0, ram)
    local pattern = string.rep("\xa5\x5a", 2 << 20)
    g:write(0, pattern)
    local o = { kernel = { name = "bad.bzImage", data = data } }
    for k, v in pairs(opts or {}) do o[k] = v end
    local ok, err = pcall(linux.boot, g, o)
    assert.is_false(ok, "linux.boot accepted it")
    return err, g:read(0, 4 << 20) == pattern
  end

  it("refuses a bad magic", function()
    local err, same = refuse(patch(0x202, "HdrX"))
    assert.matches('^linux%.boot: bad%.bzImage: bad magic at 0x202 %(want "HdrS"%)', err)
    assert.is_true(same)
  end)

  it("refuses an ELF file (no setup header)", function()
    local err, same = refuse(slurp("build/guests/elf64.elf"))
    assert.matches("^linux%.boot: bad%.bzImage: ", err)
    assert.is_true(same)
  end)

  for _, n in ipairs{ 0, 1, 0x1f1, 0x205, 0x207 } do
    it(("refuses an image truncated to %d bytes (before the magic and version)"):format(n), function()
      local err, same = refuse(good:sub(1, n))
      assert.equals(("linux.boot: bad.bzImage: truncated: %d bytes, too short for a setup header (the \"HdrS\" magic is at 0x202)"):format(n), err)
      assert.is_true(same)
    end)
  end

  for _, n in ipairs{ 0x208, 0x230, 0x26b } do
    it(("refuses an image truncated to 0x%x bytes (inside the setup header)"):format(n), function()
      local err, same = refuse(good:sub(1, n))
      assert.matches("^linux%.boot: bad%.bzImage: truncated setup header: " .. n .. " bytes, field %S+ needs 0x%x+$", err)
      assert.is_true(same)
    end)
  end

  for _, n in ipairs{ 0x300, 0x9ff } do
    it(("refuses an image truncated to 0x%x bytes (inside the setup sectors)"):format(n), function()
      local err, same = refuse(good:sub(1, n))
      assert.equals(("linux.boot: bad.bzImage: truncated: %d bytes, the boot sector and 4 setup sectors need 2560"):format(n), err)
      assert.is_true(same)
    end)
  end

  it("refuses an image with no protected-mode kernel", function()
    local err, same = refuse(good:sub(1, 0xa00))
    assert.equals("linux.boot: bad.bzImage: truncated: no protected-mode kernel after the 4 setup sectors", err)
    assert.is_true(same)
  end)

  it("refuses an image whose protected-mode kernel is shorter than syssize says", function()
    local n = 0xa00 + 0x1000
    local err, same = refuse(good:sub(1, n))
    assert.equals(("linux.boot: bad.bzImage: truncated: the protected-mode kernel has 4096 bytes, syssize says %d")
      :format(le(good, "I4", 0x1f4) * 16), err)
    assert.is_true(same)
  end)

  it("refuses a protocol older than 2.06", function()
    local err, same = refuse(patch(0x206, "\4\2"))
    assert.equals("linux.boot: bad.bzImage: protocol 2.04 is older than 2.06", err)
    assert.is_true(same)
  end)

  it("refuses a zImage (no LOADED_HIGH)", function()
    local err, same = refuse(patch(0x211, "\0"))
    assert.matches("^linux%.boot: bad%.bzImage: loadflags 0x0 lacks LOADED_HIGH", err)
    assert.is_true(same)
  end)

  it("refuses a kernel larger than RAM (init_size)", function()
    local err, same = refuse(patch(0x260, string.pack("<I4", 64 << 20)))
    assert.equals("linux.boot: bad.bzImage: the kernel needs 0x4000000 bytes (init_size) of RAM at 0x100000 (not relocatable); the guest has 0x400000 bytes of RAM", err)
    assert.is_true(same)
  end)

  it("refuses the 64-bit entry of a kernel without XLF_KERNEL_64", function()
    local err, same = refuse(patch(0x236, "\0\0"), { entry = "64" })
    assert.matches('^linux%.boot: bad%.bzImage: no 64%-bit entry point %(protocol 2%.15, xloadflags 0x0 lacks XLF_KERNEL_64%)', err)
    assert.is_true(same)
  end)

  it("refuses a command line longer than cmdline_size", function()
    local err, same = refuse(good, { cmdline = string.rep("x", 2048) })
    assert.equals("linux.boot: bad.bzImage: command line of 2048 bytes is longer than the kernel's cmdline_size 2047", err)
    assert.is_true(same)
  end)

  it("names a missing file, and maps nothing when it fails", function()
    local g <close> = H.guest()
    local ok, err = pcall(linux.boot, g, { kernel = "/nonexistent/bzImage", mem = 4 << 20 })
    assert.is_false(ok)
    assert.equals("linux.boot: /nonexistent/bzImage: cannot open: No such file or directory", err)
    ok, err = pcall(linux.boot, g, { kernel = { name = "bad", data = good:sub(1, 0x300) }, mem = 4 << 20 })
    assert.is_false(ok)
    assert.same({}, g:mappings())
  end)
end)
