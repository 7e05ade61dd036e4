-- mkinitramfs.lua - writes a minimal initramfs (an uncompressed "newc" cpio
-- archive; `make linux-initramfs` gzips it) holding a static busybox and an
-- /init script.
--
--   lua5.4 examples/mkinitramfs.lua OUT.cpio /bin/busybox
--
-- /init mounts /proc, /sys, /dev and /dev/pts, then either runs the command
-- given on the kernel command line as moonvisor.run="..."
-- (examples/linux.lua --run) or prints the line
--   moonvisor-initramfs: Linux 6.1.0-56-amd64, 1 CPU(s): a shell on ttyS0 ...
-- and starts a shell on the console (cttyhack: it becomes the controlling
-- terminal, so Ctrl-C reaches the shell's children) with the prompt
--   moonvisor-linux:/#
-- It powers the machine off (poweroff -f: ACPI S5) when that command or the
-- shell ends, and on `poweroff`, `reboot` and `halt` typed in the shell
-- (busybox sends those to PID 1 as SIGUSR2, SIGTERM and SIGUSR1).
local out, busybox = arg[1], arg[2]
if not out or not busybox then
  io.stderr:write("usage: mkinitramfs.lua OUT.cpio /path/to/static/busybox\n") os.exit(2)
end

local init = [[#!/bin/busybox sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
hostname moonvisor
trap 'poweroff -f' USR2
trap 'reboot -f' TERM
trap 'halt -f' USR1
cmd=$(sed -n 's/.*moonvisor\.run="\([^"]*\)".*/\1/p' /proc/cmdline)
if [ -n "$cmd" ]; then
  echo "moonvisor-initramfs: running: $cmd"; sh -c "$cmd"; echo "moonvisor-initramfs: exit status $?"
else
  echo "moonvisor-initramfs: Linux $(uname -r), $(grep -c ^processor /proc/cpuinfo) CPU(s): a shell on $(cat /sys/class/tty/console/active) (exit or poweroff ends the machine)"
  PS1='moonvisor-linux:\w# ' setsid cttyhack sh &
  wait
fi
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
