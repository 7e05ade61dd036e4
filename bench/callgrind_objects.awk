# bench/callgrind_objects.awk - self instructions per object file (the
# executable, each shared library) in a callgrind output file, one
# "path count" line each; bench/counts.sh splits its figures with it.
# Code without a source file (no debug information: "???") in an object
# is counted as "path:???", so the Lua library that the executable links
# in statically (Debian's liblua5.4.a) stays apart from moonvisor's code.
# Callgrind names an object or file in full once, "(id) path", and by
# "(id)" after; a count line that follows "calls=" is the cost of a call
# (inclusive), every other count line is an instruction's own.
function named(kind, s,   id) {
  id = s; sub(/ .*/, "", id)
  if (s ~ / /) { sub(/^[^ ]* /, "", s); name[kind, id] = s }
  return name[kind, id]
}
/^ob=/  { s = $0; sub(/^ob=/, "", s); ob = named("ob", s); next }
/^cob=/ { s = $0; sub(/^cob=/, "", s); named("ob", s); next }
/^fl=/  { s = $0; sub(/^fl=/, "", s); fl = named("fl", s); file = fl; next }
/^f[ie]=/ { s = $0; sub(/^f[ie]=/, "", s); file = named("fl", s); next }
/^cf[il]=/ { s = $0; sub(/^cf[il]=/, "", s); named("fl", s); next }
/^fn=/  { file = fl; next }
/^calls=/ { call = 1; next }
/^[0-9+*-]/ {
  if (call) { call = 0; next }
  n = split($0, f, " "); cost[file == "???" ? ob ":???" : ob] += f[n]; next
}
END { for (o in cost) print o, cost[o] }
