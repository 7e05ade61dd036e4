# blocks.awk - basic-block starts from `objdump -d --no-show-raw-insn`, one
# hex address a line, for breakpoint coverage (scripts/moonvisor/fuzz.lua):
# every function symbol, every direct jump/call target, and the instruction
# after every jump, call, ret, hlt or ud2.
/^[0-9a-f]+ <[^>]*>:$/ { a = $1; sub(/^0+/, "", a); print "0x" a; next }
/^ *[0-9a-f]+:\t/ {
  split($0, part, "\t")
  addr = part[1]; gsub(/[ :]/, "", addr)
  if (pending) { print "0x" addr; pending = 0 }
  n = split(part[2], w, " +")
  m = w[1]
  if (m ~ /^(j|call|loop)/) {
    if (n >= 2 && w[2] ~ /^[0-9a-f]+$/) print "0x" w[2]
    pending = 1
  } else if (m ~ /^(ret|hlt|ud2|iret)/) pending = 1
}
