-- gdb_smp_stub.lua - a child process for smp_spec.lua: a guest with two
-- real-mode VCPUs behind g:gdbserver{ cpus = ... } on port arg[1].
--   VCPU 0 at 0x1000: l: inc ax / jmp l
--   VCPU 1 at 0x2000: mov cx, 0 / l: inc cx / cmp cx, 3 / jne l / hlt
local mv = require "moonvisor"
local g = mv.guest{ backend = os.getenv("MOONVISOR_BACKEND") }
g:map(0, mv.vmo(0x10000))
g:write(0x1000, "\x40\xeb\xfd")
g:write(0x2000, "\xb9\x00\x00\x41\x83\xf9\x03\x75\xfa\xf4")
local cpus = { g:vcpu{ entry = 0x1000 }, g:vcpu{ entry = 0x2000 } }
local res = g:gdbserver{ port = tonumber(arg[1]), cpus = cpus }
print(("session: %s clients=%d; cpu0 rip=0x%x cpu1 rcx=%d"):format(res.how, res.clients, cpus[1].rip, cpus[2].rcx & 0xffff))
