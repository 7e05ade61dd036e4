-- bench/modes.lua - the same compute loop (10 million dec/jnz iterations)
-- run in long mode (CPL0) and in user mode (CPL3), wall time of each.  On
-- kvm-pvm hosts CPL0 code is emulated by the host kernel and CPL3 code runs
-- natively, which is why "user" mode exists; on hardware KVM both run
-- natively; the soft backend emulates both alike.
-- Run: build/moonvisor bench/modes.lua [iterations]
local mv = require "moonvisor"

local N = tonumber(arg and arg[1]) or 10000000
local backend = os.getenv("MOONVISOR_BACKEND") or (io.open("/dev/kvm") and "kvm" or "soft")

-- mov rcx, N ; l: dec rcx ; jnz l ; then hlt (CPL0) or mov eax, 60 ; syscall (CPL3)
local loop = "\x48\xb9" .. string.pack("<I8", N) .. "\x48\xff\xc9" .. "\x75\xfb"
local ends = { long = "\xf4", user = "\xb8\x3c\x00\x00\x00\x0f\x05" }

local function now()
  local f = io.open("/proc/uptime")
  local t = f:read("n")
  f:close()
  return t
end

local function run(mode)
  local g <close> = mv.guest{ backend = backend }
  g:map(0, mv.vmo(0x400000))
  g:write(0x100000, loop .. ends[mode])
  local cpu = g:vcpu{ entry = 0x100000, mode = mode, stack = 0x200000 }
  local t0 = now()
  local e = cpu:run{ timeout_ms = 600000 }
  local t = now() - t0
  assert(e.type == "syscall" or e.type == "hlt", mode .. " ended with " .. e.type)
  return t
end

local long_s, user_s = run("long"), run("user")
print(("compute loop, %d iterations (%s backend):"):format(N, backend))
print(("  long mode (CPL0)  %8.2f s   %6.2f ns/iteration"):format(long_s, long_s / N * 1e9))
print(("  user mode (CPL3)  %8.2f s   %6.2f ns/iteration"):format(user_s, user_s / N * 1e9))
print(("  long / user       %8.1fx"):format(long_s / math.max(user_s, 0.01)))
