#!/usr/bin/env bash
# bench/counts.sh - the figures that do not drift (`make bench-counts`):
# instructions executed in user space (valgrind --tool=callgrind) and
# ioctls (strace), per Lua-handled exit, per snapshot restore, per fuzz
# execution and per start.  Run from anywhere after `make`; uses the kvm
# backend when /dev/kvm exists, else soft (MOONVISOR_BACKEND overrides).
# Without valgrind or strace the rows that need them say so.
#
#   bench/counts.sh            the table
#   bench/counts.sh -v         also the ioctls of each measured part by name
#
# How each figure is made:
#   instructions per exit   callgrind's total for 40000 exits minus that for
#                           20000, divided by 20000 (bench/counts.lua exits:
#                           out dx, al in a loop, a handler that counts; and
#                           exits-data, where the byte written changes; and
#                           exits-args, whose handler takes its arguments)
#   instructions per fuzz   the same for bench/counts.lua fuzz 400 and 200
#     execution             (800 and 400 executions of examples/fuzz_parser.lua,
#                           coverage on), divided by 400
#   instructions per byte   the same for 4000 and 2000 bytes printed on
#                           moonvisor.pc's COM1 (bench/counts.lua console),
#                           two device exits each
#   ioctls per exit         the same difference, counted by strace
#   ioctls per restore      ioctls between the markers around each g:restore
#                           (bench/counts.lua restore: a long-mode guest at
#                           ring 0; restore-user: a guest of mode "user", a
#                           sandbox; fuzz: the user-mode fuzz target)
#   ioctls per fuzz exec    ioctls between the markers around executions
#                           201..400 of examples/fuzz_parser.lua, coverage on
#   instructions per start  callgrind's total for the whole command
#   "in liblua" etc.        the same figure split by the object the
#                           instructions ran in (bench/callgrind_objects.awk):
#                           what Lua's own library costs (the handler's call
#                           and body, undumping and running library code;
#                           linked into the executable, it is the code there
#                           without debug information) beside moonvisor's
#                           own code, libc, ld.so
#   ioctls per start        strace's count for the whole command
set -u
cd "$(dirname "$0")/.."
VERBOSE=0
[ "${1:-}" = -v ] && VERBOSE=1
MV=build/moonvisor
[ -x $MV ] || { echo "counts: $MV missing: run make"; exit 1; }
backend=${MOONVISOR_BACKEND:-$(test -c /dev/kvm && echo kvm || echo soft)}
export MOONVISOR_BACKEND=$backend
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
have() { command -v "$1" >/dev/null; }

# instructions COMMAND...: callgrind's "Collected" total (user space, the
# whole process); the profile stays in $tmp/cg.out until the next call
instructions() {
  valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" "$@" >/dev/null 2>"$tmp/cg.err"
  local n
  n=$(sed -n 's/.*Collected : *\([0-9]*\).*/\1/p' "$tmp/cg.err" | tail -1)
  [ -n "$n" ] || { echo "counts: callgrind failed for $*: $(tail -3 "$tmp/cg.err")" >&2; echo 0; return; }
  echo "$n"
}

# trace COMMAND...: strace of ioctls and the markers' openat into $tmp/st
trace() { strace -f -o "$tmp/st" -e trace=ioctl,openat "$@" >/dev/null 2>&1; }

# ioctls [FROM TO]: ioctls in $tmp/st (between the markers FROM and TO, each pair counted)
ioctls() {
  awk -v from="${1:-}" -v to="${2:-}" '
    BEGIN { on = (from == "") }
    from != "" && index($0, "moonvisor-mark-" from "\"") { on = 1; next }
    to != "" && index($0, "moonvisor-mark-" to "\"") { on = 0; next }
    on && /ioctl\(/ && !/resumed>/ { n++ }
    END { print n + 0 }' "$tmp/st"
}

# names [FROM TO]: the same ioctls by request name, most frequent first
names() {
  awk -v from="${1:-}" -v to="${2:-}" '
    BEGIN { on = (from == "") }
    from != "" && index($0, "moonvisor-mark-" from "\"") { on = 1; next }
    to != "" && index($0, "moonvisor-mark-" to "\"") { on = 0; next }
    on && /ioctl\(/ && !/resumed>/ { sub(/.*ioctl\([0-9]+, /, ""); sub(/[,)].*/, ""); c[$0]++ }
    END { for (k in c) printf "      %6d  %s\n", c[k], k }' "$tmp/st" | sort -rn
}

# objects FILE: "class instructions" per object class of a callgrind profile
objects() {
  awk -f bench/callgrind_objects.awk "$1" | awk '
    { o = $1; sub(/.*\//, "", o); sub(/:[?]+$/, "", o)
      lua_in_exe = o == "moonvisor" && $1 ~ /:[?]+$/   # Lua linked in: no debug information
      c = o ~ /^liblua/ || lua_in_exe ? "liblua" : o == "moonvisor" ? "moonvisor" : o ~ /^libc[.]/ ? "libc" : o ~ /^ld-linux/ ? "ld.so" : "other"
      n[c] += $2 }
    END { for (c in n) print c, n[c] }'
}

# split_rows A B N: rows "  of which in CLASS" for (B - A) / N per object
# class, A and B being saved objects() outputs (N = 1: B alone)
split_rows() {
  for c in liblua moonvisor libc ld.so other; do
    local x y
    x=$(awk -v c=$c '$1 == c { print $2 }' "$1"); y=$(awk -v c=$c '$1 == c { print $2 }' "$2")
    [ -z "$y" ] || [ $(( y - ${x:-0} )) -le 0 ] && continue
    local v
    if [ "$3" = 1 ]; then v=$(( y - ${x:-0} )); else v=$(ratio $(( y - ${x:-0} )) "$3"); fi
    [ "$v" = 0.0 ] || row "    of which in $c" "$v"
  done
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf (b ? "%.1f" : "-"), a / b }'; }
row() { printf '  %-58s %12s\n' "$1" "$2"; }

echo "bench/counts: $backend backend, $(date +%Y-%m-%d), $(uname -m), kernel $(uname -r)"
if [ "$backend" = kvm ]; then
  if [ -d /sys/module/kvm_pvm ]; then kind=kvm-pvm
  elif grep -qw hypervisor /proc/cpuinfo; then kind="nested (KVM inside a VM)"
  else kind=hardware; fi
  echo "host kind: $kind"
fi
echo

if have valgrind; then
  a=$(instructions $MV bench/counts.lua exits 20000); objects "$tmp/cg.out" > "$tmp/obj.a"
  b=$(instructions $MV bench/counts.lua exits 40000); objects "$tmp/cg.out" > "$tmp/obj.b"
  row "instructions per Lua-handled exit (user space)" "$(ratio $((b - a)) 20000)"
  split_rows "$tmp/obj.a" "$tmp/obj.b" 20000
  a=$(instructions $MV bench/counts.lua exits-data 20000)
  b=$(instructions $MV bench/counts.lua exits-data 40000)
  row "  ... with the data written changing every exit" "$(ratio $((b - a)) 20000)"
  a=$(instructions $MV bench/counts.lua exits-args 20000)
  b=$(instructions $MV bench/counts.lua exits-args 40000)
  row "  ... a handler taking (exit, cpu) that reads exit.data" "$(ratio $((b - a)) 20000)"
  a=$(instructions $MV bench/counts.lua fuzz 200)
  b=$(instructions $MV bench/counts.lua fuzz 400)
  row "instructions per fuzz execution (fuzz_parser, coverage on)" "$(ratio $((b - a)) 400)"
  a=$(instructions $MV bench/counts.lua console 2000)
  b=$(instructions $MV bench/counts.lua console 4000)
  row "instructions per console byte (pc COM1: LSR read, THR write)" "$(ratio $((b - a)) 2000)"
else
  row "instructions per Lua-handled exit" "(no valgrind)"
fi
if have strace; then
  trace $MV bench/counts.lua exits 20000; a=$(ioctls)
  trace $MV bench/counts.lua exits 40000; b=$(ioctls)
  row "ioctls per Lua-handled exit" "$(ratio $((b - a)) 20000)"
  trace $MV bench/counts.lua restore 200
  row "ioctls per restore (long mode, ring 0, guest ran)" "$(ratio "$(ioctls restore-begin restore-end)" 200)"
  [ $VERBOSE = 1 ] && names restore-begin restore-end
  trace $MV bench/counts.lua restore-user 200
  row "ioctls per restore (mode user, spun to a timeout)" "$(ratio "$(ioctls restore-begin restore-end)" 200)"
  [ $VERBOSE = 1 ] && names restore-begin restore-end
  trace $MV bench/counts.lua fuzz 200
  row "ioctls per restore (fuzz target, mode user)" "$(ratio "$(ioctls restore-begin restore-end)" 200)"
  [ $VERBOSE = 1 ] && names restore-begin restore-end
  row "ioctls per fuzz execution (coverage on, steady state)" "$(ratio "$(ioctls execs-begin execs-end)" 200)"
  [ $VERBOSE = 1 ] && names execs-begin execs-end
else
  row "ioctls" "(no strace)"
fi

starts=("-e ''" "examples/hello.lua" "examples/multiboot.lua build/guests/mbhello.elf")
for s in "${starts[@]}"; do
  eval "set -- $s"
  if have valgrind; then
    row "instructions: moonvisor $s" "$(instructions $MV "$@")"
    objects "$tmp/cg.out" > "$tmp/obj.b"; : > "$tmp/obj.a"
    split_rows "$tmp/obj.a" "$tmp/obj.b" 1
  fi
  if have strace; then
    trace $MV "$@"
    row "ioctls: moonvisor $s" "$(ioctls)"
    [ $VERBOSE = 1 ] && names
  fi
done
exit 0
