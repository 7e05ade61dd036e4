#!/usr/bin/env bash
# bench/linux_boot.sh - Debian's stock kernel with the busybox initramfs of
# `make linux-initramfs`, booted to its shell by `moonvisor run` and by
# `qemu-system-x86_64 -accel kvm` (-M pc and -M microvm) on the same
# /dev/kvm, with the same kernel, initramfs, command line and RAM.  The time
# is from starting the process to the line the initramfs's /init prints
# just before it starts the shell ("moonvisor-initramfs: Linux ..."); the
# process is then killed.  Then bench/linux_boot.lua boots once more from
# Lua and prints where the exits to moonvisor went up to the prompt, per
# device.
#
#   bench/linux_boot.sh [N]        median of N runs each (default 3)
#   make test-vm VM_CMD='bench/linux_boot.sh'    where there is no /dev/kvm
#
# LINUX_KERNEL (default: the newest /boot/vmlinuz-*), LINUX_APPEND (default
# "console=ttyS0"), LINUX_BOOT_TIMEOUT (seconds per boot, default 600),
# LINUX_SMP (CPUs, default 1).
set -u
cd "$(dirname "$0")/.."
N=${1:-3}
K=${LINUX_KERNEL:-$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -1)}
I=build/linux/initramfs.cpio.gz
APPEND=${LINUX_APPEND:-console=ttyS0}
TIMEOUT=${LINUX_BOOT_TIMEOUT:-600}
SMP=${LINUX_SMP:-1}
MARK="moonvisor-initramfs: Linux"
[ -c /dev/kvm ] || { echo "linux_boot: no /dev/kvm here (make test-vm VM_CMD='bench/linux_boot.sh' runs it in the nested VM)"; exit 1; }
[ -n "$K" ] && [ -f "$K" ] || { echo "linux_boot: no kernel (apt-get install linux-image-amd64, or LINUX_KERNEL=...)"; exit 1; }
[ -f "$I" ] && [ -x build/moonvisor ] || { echo "linux_boot: run make all linux-initramfs first"; exit 1; }
command -v qemu-system-x86_64 >/dev/null || { echo "linux_boot: qemu-system-x86_64 missing (apt-get install qemu-system-x86)"; exit 1; }

# time_to_mark COMMAND...: milliseconds from the start to $MARK on its stdout, or "-"
time_to_mark() {
  local t0 t1 line pid
  t0=$(date +%s%N)
  coproc BOOT { exec "$@" </dev/null 2>/dev/null; }
  pid=$BOOT_PID
  t1=
  while IFS= read -r -t "$TIMEOUT" line <&"${BOOT[0]}"; do
    case $line in *"$MARK"*) t1=$(date +%s%N); break ;; esac
  done
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  if [ -n "$t1" ]; then echo $(( (t1 - t0) / 1000000 )); else echo -; fi
}

median() {   # the middle run; of an even number, the lower middle one
  tr ' ' '\n' | grep -v '^-$' | sort -n | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)]; else print "-" }'; }

QEMU=(qemu-system-x86_64 -accel kvm -m 256 -smp "$SMP" -nodefaults -display none -vga none -serial stdio -no-reboot)
boot() {   # boot NAME: one run's milliseconds
  case $1 in
    moonvisor) time_to_mark build/moonvisor run -kernel "$K" -initrd "$I" -append "$APPEND" -m 256 -smp "$SMP" -no-reboot ;;
    pc)        time_to_mark "${QEMU[@]}" -M pc -kernel "$K" -initrd "$I" -append "$APPEND" ;;
    microvm)   time_to_mark "${QEMU[@]}" -M microvm -kernel "$K" -initrd "$I" -append "$APPEND" ;;
  esac
}
echo "linux_boot: $K, $I, append \"$APPEND\", 256 MiB, $SMP CPU(s); median of $N"
for name in moonvisor pc microvm; do
  times=()
  for _ in $(seq "$N"); do times+=("$(boot $name)"); done
  label=$([ $name = moonvisor ] && echo "moonvisor run" || echo "qemu -M $name")
  printf '%-16s to the shell: %6s ms (runs: %s)\n' "$label" "$(echo "${times[*]}" | median)" "${times[*]}"
done
build/moonvisor bench/linux_boot.lua "$K" "$I" "$APPEND"
