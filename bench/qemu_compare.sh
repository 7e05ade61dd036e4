#!/usr/bin/env bash
# bench/qemu_compare.sh - the same kernels, side by side: `qemu-system-x86_64
# -kernel` (-accel kvm where /dev/kvm exists, TCG otherwise) and `moonvisor
# run` (kvm backend, or soft) with the very same command line, QEMU's pc
# machine options and isa-debug-exit at 0xf4 included.  Prints one row per
# case: each side's exit status, wall time (median of N runs, default 3) and
# what the kernel said last; "=" when both statuses agree.
#
#   bench/qemu_compare.sh [N]            (after make; needs qemu-system-x86)
#
# The kernels are the test kernels of the Makefile: pctest*.elf (fw_cfg,
# ACPI, CMOS, PCI, UART LSR, isa-debug-exit; Multiboot at 1 MiB and at
# 0x8000, PVH), mbhello.elf (Multiboot modules) and bzImage (the Linux boot
# protocol test kernel).  Differences are expected where the README's
# "Running kernels" says so.
set -u
cd "$(dirname "$0")/.."
N=${1:-3}
TIMEOUT=${QEMU_COMPARE_TIMEOUT:-30}
command -v qemu-system-x86_64 >/dev/null || { echo "qemu_compare: qemu-system-x86_64 missing (apt-get install qemu-system-x86)"; exit 1; }
for k in pctest.elf pctest_low.elf pctest_pvh.elf mbhello.elf bzImage; do
  [ -f build/guests/$k ] || { echo "qemu_compare: build/guests/$k missing: run make"; exit 1; }
done
if [ -c /dev/kvm ]; then accel=kvm; backend=kvm; else accel=tcg; backend=soft; fi
COMMON="-M pc -display none -nodefaults -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=0x04"

# name|arguments after the common ones
CASES=(
  "multiboot ELF, headers at 0xff000|-kernel build/guests/pctest.elf -append checks"
  "multiboot, -smp 4 -m 256|-kernel build/guests/pctest.elf -smp 4 -m 256"
  "multiboot ELF linked at 0x8000|-kernel build/guests/pctest_low.elf"
  "PVH ELF note|-kernel build/guests/pctest_pvh.elf -append checks"
  "interrupts: 8259, I/O APIC, PIT|-kernel build/guests/pctest.elf -append irq"
  "ACPI power-off (S5)|-kernel build/guests/pctest.elf -append poweroff"
  "reset through 0xcf9, -no-reboot|-kernel build/guests/pctest.elf -append reset -no-reboot"
  "triple fault, -no-reboot|-kernel build/guests/pctest.elf -append fault -no-reboot"
  "cli; hlt for ever|-kernel build/guests/pctest.elf -append halt"
  "multiboot modules (-initrd)|-kernel build/guests/mbhello.elf -append hi -initrd examples/guests/mbmodule.txt,examples/guests/mbmodule.txt"
  "Linux boot protocol bzImage|-kernel build/guests/bzImage -append console=ttyS0"
)

now() { date +%s%N; }
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
# what the kernel said last: its summary line, or the last line
said() { tr -d '\r' <"$1" | grep -E '^(pctest|bzkernel|mbhello|module)' | tail -1 | cut -c1-38; }

# run SIDE ARGS -> sets st, ms, out
run() {
  local side=$1; shift
  local times=() out; out=$(mktemp)
  for ((i = 0; i < N; i++)); do
    local t0; t0=$(now)
    if [ "$side" = qemu ]; then
      timeout "$TIMEOUT" qemu-system-x86_64 -accel $accel $COMMON "$@" >"$out" 2>/dev/null </dev/null
    else
      MOONVISOR_BACKEND=$backend timeout "$TIMEOUT" build/moonvisor run $COMMON "$@" >"$out" 2>/dev/null </dev/null
    fi
    st=$?
    times+=($(( ($(now) - t0) / 1000 )))
  done
  ms=$(awk -v u="$(median "${times[@]}")" 'BEGIN { printf "%.1f", u / 1000 }')
  said_text=$(said "$out")
  rm -f "$out"
}

echo "qemu-system-x86_64 -accel $accel  vs  moonvisor run (backend $backend); median of $N; common: $COMMON"
echo "(status 124: killed by timeout after ${TIMEOUT} s)"
printf '| %-36s | %-6s | %9s | %-38s | %-6s | %9s | %-38s | %s |\n' case qemu "qemu ms" "qemu: the kernel said" mv "mv ms" "moonvisor: the kernel said" same
printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..38})" "--------" "-----------" "$(printf -- '-%.0s' {1..40})" "--------" "-----------" "$(printf -- '-%.0s' {1..40})" "------"
for c in "${CASES[@]}"; do
  name=${c%%|*}; args=${c#*|}
  # shellcheck disable=SC2086
  run qemu $args; qst=$st; qms=$ms; qsaid=$said_text
  # shellcheck disable=SC2086
  run mv $args; mst=$st; mms=$ms; msaid=$said_text
  same=$([ "$qst" = "$mst" ] && echo "=" || echo "differs")
  printf '| %-36s | %-6s | %9s | %-38s | %-6s | %9s | %-38s | %s |\n' "$name" "$qst" "$qms" "$qsaid" "$mst" "$mms" "$msaid" "$same"
done
