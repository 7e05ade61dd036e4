-- mkinitramfs.lua - writes a minimal initramfs (an uncompressed "newc" cpio
-- archive, which the kernel unpacks as is) holding a static busybox and an
-- /init script; used by `make linux-initramfs`.
--
--   lua5.4 examples/mkinitramfs.lua OUT.cpio /bin/busybox
--
-- /init mounts /proc, /sys and /dev, runs the command given on the kernel
-- command line as moonvisor.run="..." (examples/linux.lua --run) or else a
-- shell on the console, then powers off.
local out, busybox = arg[1], arg[2]
if not out or not busybox then
  io.stderr:write("usage: mkinitramfs.lua OUT.cpio /path/to/static/busybox\n") os.exit(2)
end

local init = [[#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
echo "initramfs: $(uname -sr), $(grep -c ^processor /proc/cpuinfo) CPU(s), $(grep MemTotal /proc/meminfo)"
cmd=$(sed -n 's/.*moonvisor\.run="\([^"]*\)".*/\1/p' /proc/cmdline)
if [ -n "$cmd" ]; then echo "initramfs: running: $cmd"; sh -c "$cmd"; echo "initramfs: exit status $?"
else sh; fi
poweroff -f
]]

local f = assert(io.open(busybox, "rb"))
local bb = f:read("a")
f:close()

local parts, ino = {}, 1
local function entry(name, mode, data, rmajor, rminor)
  data = data or ""
  local hdr = ("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X"):format(
    ino, mode, 0, 0, 1, 0, #data, 0, 0, rmajor or 0, rminor or 0, #name + 1, 0)
  ino = ino + 1
  local h = hdr .. name .. "\0"
  parts[#parts + 1] = h .. string.rep("\0", (4 - #h % 4) % 4)
  parts[#parts + 1] = data .. string.rep("\0", (4 - #data % 4) % 4)
end
for _, d in ipairs{ "bin", "dev", "proc", "sys", "tmp", "sbin", "usr", "usr/bin", "usr/sbin" } do
  entry(d, 0x41ed)                      -- directory 0755
end
entry("dev/console", 0x2180, "", 5, 1)  -- character device 5:1, for the kernel's first open
entry("bin/busybox", 0x81ed, bb)        -- regular file 0755
entry("bin/sh", 0xa1ff, "busybox")      -- symlink
entry("init", 0x81ed, init)
entry("TRAILER!!!", 0)
local o = assert(io.open(out, "wb"))
o:write(table.concat(parts))
o:close()
print(("mkinitramfs: %s (%d bytes)"):format(out, #table.concat(parts)))
