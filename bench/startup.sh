#!/usr/bin/env bash
# bench/startup.sh - start-up time: the same Multiboot kernel (built from
# examples/guests/mbhello.S: prints two lines on COM1, exits through port
# 0xf4) run by moonvisor (examples/multiboot.lua) and by QEMU in its fastest
# sensible configuration (microvm, no firmware, -kernel), alternated, N runs
# each (default 11), medians in ms and their ratio; and moonvisor alone:
# `moonvisor -e ''` (the executable and its Lua state) and examples/hello.lua
# (a real-mode guest through the Lua library).  QEMU uses KVM when /dev/kvm
# exists, TCG otherwise; moonvisor the kvm or soft backend likewise.  For
# counts that do not drift (instructions, ioctls) see bench/counts.sh.
set -u
cd "$(dirname "$0")/.."
N=${1:-11}
KERNEL=build/guests/mbhello.elf
command -v qemu-system-x86_64 >/dev/null || { echo "startup: qemu-system-x86_64 missing (apt-get install qemu-system-x86)"; exit 1; }
[ -f "$KERNEL" ] || { echo "startup: $KERNEL missing: run make"; exit 1; }
if [ -c /dev/kvm ]; then accel=kvm; backend=kvm; else accel=tcg; backend=soft; fi
now() { date +%s%N; }
mv_times=(); qemu_times=(); bare_times=(); hello_times=()
for ((i = 0; i < N; i++)); do
  t0=$(now)
  build/moonvisor -e '' || { echo "startup: moonvisor -e '' failed"; exit 1; }
  t1=$(now)
  MOONVISOR_BACKEND=$backend build/moonvisor examples/hello.lua >/dev/null || { echo "startup: hello.lua failed"; exit 1; }
  t2=$(now)
  bare_times+=($(( (t1 - t0) / 1000 ))); hello_times+=($(( (t2 - t1) / 1000 )))
  t0=$(now)
  MOONVISOR_BACKEND=$backend build/moonvisor examples/multiboot.lua "$KERNEL" >/dev/null
  [ $? -eq 33 ] || { echo "startup: moonvisor run failed"; exit 1; }
  t1=$(now)
  qemu-system-x86_64 -accel $accel -M microvm,pit=off,pic=off,rtc=off,acpi=off -nodefaults -vga none \
    -display none -serial stdio -kernel "$KERNEL" -device isa-debug-exit,iobase=0xf4,iosize=0x04 >/dev/null 2>&1
  [ $? -eq 33 ] || { echo "startup: qemu run failed"; exit 1; }
  t2=$(now)
  mv_times+=($(( (t1 - t0) / 1000 ))); qemu_times+=($(( (t2 - t1) / 1000 )))
done
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
m=$(median "${mv_times[@]}"); q=$(median "${qemu_times[@]}")
e=$(median "${bare_times[@]}"); h=$(median "${hello_times[@]}")
echo "start-up, median of $N alternated runs:"
awk -v m="$m" -v q="$q" -v e="$e" -v h="$h" -v b="$backend" -v a="$accel" 'BEGIN {
  printf "  moonvisor -e %s                      %8.1f ms\n", "\047\047", e / 1000
  printf "  moonvisor examples/hello.lua (%s)   %8.1f ms\n", b, h / 1000
  printf "  Multiboot hello kernel:\n"
  printf "    moonvisor (%s backend)            %8.1f ms\n", b, m / 1000
  printf "    qemu -accel %-4s microvm           %8.1f ms\n", a, q / 1000
  printf "    qemu / moonvisor                   %8.1fx\n", q / m }'
