-- bench/counts.lua - the workloads behind bench/counts.sh (`make bench-counts`):
-- fixed amounts of work whose instructions (callgrind) and ioctls (strace)
-- are counted from outside.  Counts do not drift as times do, so they
-- compare across hosts and runs.
--
--   build/moonvisor bench/counts.lua exits N     N Lua-handled IO exits (real mode, out dx, al)
--   build/moonvisor bench/counts.lua exits-data N  the same with another byte written each time
--   build/moonvisor bench/counts.lua exits-args N  the same with a handler that takes (exit, cpu)
--                                                and reads exit.data
--   build/moonvisor bench/counts.lua console N  N bytes a guest prints on moonvisor.pc's COM1 the
--                                                way a polling driver does (an LSR read, a THR
--                                                write), lines of 63 letters and a newline,
--                                                to stdout
--   build/moonvisor bench/counts.lua fuzz N      2N fuzz executions of examples/fuzz_parser.lua
--                                                (coverage on), the last N between markers
--   build/moonvisor bench/counts.lua restore N   2N restores of a ring-0 long-mode guest that
--                                                writes a page and halts, the last N marked
--   build/moonvisor bench/counts.lua restore-user N  the same for a ring-3 guest of mode "user"
--                                                (a sandbox) that spins until a 1 ms timeout
--
-- Markers: the script opens a path that does not exist,
-- /nonexistent/moonvisor-mark-<what>, before and after what is measured;
-- strace -e trace=ioctl,openat shows them between the ioctls.  Run from the
-- repository root after `make`.
local mv = require "moonvisor"

local what, n = arg[1], math.tointeger(tonumber(arg[2] or "")) or 1000

local function mark(tag)
  local f = io.open("/nonexistent/moonvisor-mark-" .. tag)
  if f then f:close() end
end

if what == "exits" or what == "exits-data" or what == "exits-args" then
  local g = mv.guest{}
  g:map(0, mv.vmo(0x10000))
  if what ~= "exits-data" then
    g:write(0x1000, "\xba\xf8\x03\xee\xeb\xfd")   -- mov dx, 0x3f8 / l: out dx, al / jmp l
  else
    g:write(0x1000, "\xba\xf8\x03\xee\xfe\xc0\xeb\xfb")   -- ... l: out dx, al / inc al / jmp l
  end
  local cpu = g:vcpu{ entry = 0x1000 }
  local count = 0
  if what == "exits-args" then
    local sum = 0
    g:trap("io", 0x3f8, 1, function(e, c) count = count + 1; sum = sum + e.data; if count == n then c:kick() end end)
  else
    g:trap("io", 0x3f8, 1, function() count = count + 1; if count == n then cpu:kick() end end)
  end
  mark("exits-begin")
  local e = cpu:enter()
  mark("exits-end")
  assert(e.type == "kick" and count == n, "exits: " .. e.type .. " after " .. count)
  print(("exits: %d Lua-handled exits (%s backend)"):format(count, g:backend()))

elseif what == "console" then
  local pc = require "moonvisor.pc"
  local m <close> = pc.new{ mem = 64 << 20 }   -- the output goes to stdout, as a start's does
  m.g:write(0x100000, table.concat{           -- 32-bit code
    "\xb9", string.pack("<I4", n),            -- mov ecx, n
    "\x89\xce",                               -- l: mov esi, ecx
    "\x83\xe6\x3f",                           -- and esi, 63
    "\x8a\x86", string.pack("<I4", 0x100100), -- mov al, [esi + line]
    "\xba\xfd\x03\x00\x00",                   -- mov edx, 0x3fd (LSR)
    "\x88\xc4\xec\x88\xe0",                    -- mov ah, al / in al, dx / mov al, ah
    "\xba\xf8\x03\x00\x00",                   -- mov edx, 0x3f8 (THR)
    "\xee",                                   -- out dx, al
    "\xe2\xe3",                               -- loop l
    "\xb0\x00\xe6\xf4",                       -- mov al, 0 / out 0xf4, al (isa-debug-exit)
  })
  m.g:write(0x100100, "\n" .. string.rep("abcdefghi", 7))
  m:start(0x100000, "protected", {})
  local r = m:run{}
  assert(r.kind == "debug-exit" and m.dev.uart:stats().tx == n, "console: " .. r.reason)
  print(("console: %d bytes (%s backend)"):format(n, m.g:backend()))

elseif what == "fuzz" then
  local fuzz = require "moonvisor.fuzz"
  local cfg = require("moonvisor.fuzz_cli").config_of("examples/fuzz_parser.lua")
  cfg.findings, cfg.quiet, cfg.status, cfg.stop_after, cfg.minimize = nil, true, false, nil, false
  cfg.seed, cfg.seconds = 1, nil
  local f = fuzz.new(cfg)
  local Guest = require("moonvisor.core").Guest
  local restore = Guest.restore
  local marking = false
  local function marked_restore(g, s)
    if marking then mark("restore-begin") end
    local r = restore(g, s)
    if marking then mark("restore-end") end
    return r
  end
  Guest.restore = marked_restore
  cfg.iterations = n
  f:run()                          -- warm-up: the corpus and coverage settle a bit
  marking = true
  mark("execs-begin")
  f.cfg.iterations = n
  local s = f:run()
  mark("execs-end")
  Guest.restore = restore
  print(("fuzz: %d + %d executions, %d blocks of %d covered, corpus %d (%s backend)"):format(
    n, s.execs - n, s.covered, s.blocks, s.corpus, f.g:backend()))

elseif what == "restore" then
  local g = mv.guest{}
  local ram = mv.vmo(0x400000)
  g:map(0, ram)
  -- mov rdi, 0x100000 / mov byte [rdi], 1 / hlt
  g:write(0x1000, "\x48\xc7\xc7\x00\x00\x10\x00\xc6\x07\x01\xf4")
  local cpu = g:vcpu{ entry = 0x1000, mode = "long", tables = 0x300000 }
  local s = g:snapshot()
  local function round()
    assert(cpu:run{ timeout_ms = 5000 }.type == "hlt")
    g:restore(s)
  end
  for _ = 1, n do round() end
  mark("restores-begin")
  for _ = 1, n do
    assert(cpu:run{ timeout_ms = 5000 }.type == "hlt")
    mark("restore-begin")
    g:restore(s)
    mark("restore-end")
  end
  mark("restores-end")
  print(("restore: %d + %d restores of a long-mode guest (%s backend)"):format(n, n, g:backend()))

elseif what == "restore-user" then
  local g = mv.guest{}
  g:map(0, mv.vmo(0x400000))
  g:write(0x100000, "\x48\xff\xc0\xeb\xfb")   -- l: inc rax / jmp l, at ring 3 in the sandbox
  local cpu = g:vcpu{ entry = 0x100000, mode = "user", stack = 0x200000 }
  local s = g:snapshot()
  for i = 1, 2 * n do
    assert(cpu:run{ timeout_ms = 1 }.type == "timeout")
    if i == n + 1 then mark("restores-begin") end
    if i > n then mark("restore-begin") end
    g:restore(s)
    if i > n then mark("restore-end") end
  end
  mark("restores-end")
  print(("restore-user: %d + %d restores of a user-mode guest stopped by a timeout (%s backend)"):format(n, n, g:backend()))

else
  io.stderr:write("usage: moonvisor bench/counts.lua exits|exits-data|fuzz|restore|restore-user N\n")
  os.exit(2)
end
