-- bench/linux_boot.lua - one boot of a Linux kernel to the busybox shell
-- through moonvisor.linux_shell, and where its exits to moonvisor went up
-- to the prompt: by exit type and by device (moonvisor.pc's exit_stats),
-- and each device's share of them.  bench/linux_boot.sh runs it after its
-- timings.
--
--   build/moonvisor bench/linux_boot.lua KERNEL INITRD [APPEND]
local shell = require "moonvisor.linux_shell"
local mv = require "moonvisor"

local K, I, append = arg[1], arg[2], arg[3] or "console=ttyS0"
if not K or not I then
  io.stderr:write("usage: moonvisor bench/linux_boot.lua KERNEL INITRD [APPEND]\n")
  os.exit(2)
end

-- kernel_messages: no `dmesg -n 1` after the prompt, so the counts end there
local sh <close> = shell.boot{ kernel = K, initrd = I, append = append, kernel_messages = true }
sh:wait_prompt()
local s = sh.machine:exit_stats()
local t = sh.boot_ms
local total = s.total
local types = {}
for ty, n in pairs(s.exits) do types[#types + 1] = ("%s %d"):format(ty, n) end
table.sort(types)
print(("linux_boot.lua: to the prompt in %d ms (%s backend), %d exits to moonvisor (%s)"):format(
  t, mv.default_backend, total, table.concat(types, ", ")))
for _, d in ipairs(s.devices) do
  print(("  %-12s %7d exits  %5.1f%%"):format(d.name, d.exits, 100 * d.exits / math.max(1, total)))
end
local uart = sh.machine.dev.uart:stats()
print(("  (uart: %d bytes sent, %d received, %d interrupts; pci: %d reads of absent functions)"):format(
  uart.tx, uart.rx, uart.irqs, sh.machine.dev.pci:stats().absent))
local r = sh:poweroff()
print(("linux_boot.lua: %s, status %d"):format(r.reason, r.status))
