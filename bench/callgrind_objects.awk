# bench/callgrind_objects.awk - self instructions per object file (the
# executable, each shared library) in a callgrind output file, one
# "path count" line each; bench/counts.sh splits its figures with it.
# Callgrind names an object in full once, "(id) path", and by "(id)" after;
# a count line that follows "calls=" is the cost of a call (inclusive),
# every other count line is an instruction's own.
function object(s,   id) {
  id = s; sub(/ .*/, "", id)
  if (s ~ / /) { sub(/^[^ ]* /, "", s); name[id] = s }
  return name[id]
}
/^ob=/  { s = $0; sub(/^ob=/, "", s); ob = object(s); next }
/^cob=/ { s = $0; sub(/^cob=/, "", s); object(s); next }
/^calls=/ { call = 1; next }
/^[0-9+*-]/ {
  if (call) { call = 0; next }
  n = split($0, f, " "); cost[ob] += f[n]; next
}
END { for (o in cost) print o, cost[o] }
