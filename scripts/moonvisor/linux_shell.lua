-- moonvisor.linux_shell: a Linux kernel booted on moonvisor.pc to a shell on
-- its serial console, driven from Lua: wait for the prompt, run a command,
-- read its output and exit status, power off.
--
--   local shell = require "moonvisor.linux_shell"
--   local sh <close> = shell.boot{ kernel = "/boot/vmlinuz-6.1.0-56-amd64",
--                                  initrd = "build/linux/initramfs.cpio.gz" }
--   sh:wait_prompt()                      -- the boot log, up to the first prompt
--   local out, status = sh:run("uname -r")   --> "6.1.0-56-amd64\n", 0
--   local r = sh:poweroff()               --> { kind = "poweroff", status = 0, ... }
--
-- shell.boot options: kernel (required), initrd, append (default
-- "console=ttyS0"), mem (bytes, default 256 MiB), cpus (1), backend,
-- prompt (a Lua pattern; default the one `make linux-initramfs`'s /init
-- sets, "moonvisor-linux:/# "), timeout_ms (for each wait, default 600 s:
-- a nested KVM boots in tens of seconds), output (fn(bytes): the console
-- as it comes, e.g. io.write), kernel_messages (true keeps the kernel's
-- messages on the console after the first prompt; by default wait_prompt
-- runs `dmesg -n 1` there, so a message printed while a command runs does
-- not land in that command's output; `dmesg` still has them all).  Bad
-- input (not a bzImage, an initrd that does not fit) raises
-- moonvisor.boot's error before anything runs.
--
-- sh.console is the moonvisor.console (expect/send/sendline/output),
-- sh.machine the moonvisor.pc machine, sh.boot_ms the time from shell.boot
-- to the first prompt.  A machine that ends while a method waits (a panic,
-- a reset) raises an error with its reason and the console's tail.
local mv = require "moonvisor"
local pc = require "moonvisor.pc"
local console = require "moonvisor.console"

local M = {}
local Shell = {}
Shell.__index = Shell
M.PROMPT = "moonvisor%-linux:[^\n]-# "

function M.boot(o)
  if type(o) ~= "table" or type(o.kernel) ~= "string" then
    error("linux_shell.boot: options with a kernel path are required", 2)
  end
  local t0 = mv.clock()
  local m = pc.new{ mem = o.mem or 256 << 20, cpus = o.cpus or 1, backend = o.backend,
                    serial = { output = false } }
  local ok, err = pcall(m.boot, m, { kernel = o.kernel, initrd = o.initrd, cmdline = o.append or "console=ttyS0" })
  if not ok then
    m:close()
    error(tostring(err), 2)
  end
  local self = setmetatable({ machine = m, prompt = o.prompt or M.PROMPT, t0 = t0,
                              timeout_ms = o.timeout_ms or 600000, n = 0,
                              kernel_messages = o.kernel_messages == true }, Shell)
  self.console = console.new{ uart = m.dev.uart, output = o.output, step = function(ms) return m:step(ms) end }
  return self
end

-- Waits for the first prompt; returns everything printed up to it.  The
-- first time, unless kernel_messages, it then turns the kernel's console
-- messages off.
function Shell:wait_prompt(timeout_ms)
  local text = self.console:expect(self.prompt, timeout_ms or self.timeout_ms)
  if not self.boot_ms then
    self.boot_ms = math.floor((mv.clock() - self.t0) * 1000)
    if not self.kernel_messages then self:run("dmesg -n 1", timeout_ms) end
  end
  return text
end

-- Runs a shell command line; returns its output (CR LF as LF) and exit
-- status, after the next prompt.
function Shell:run(cmd, timeout_ms)
  if type(cmd) ~= "string" then error("shell:run: expected a command string, got " .. type(cmd), 2) end
  self.n = self.n + 1
  local tag = "mv" .. self.n
  -- The markers are split by quotes on the command line, so its echo does not match them.
  self.console:sendline(("echo '<'%s'>'; %s; echo '</'%s $?'>'"):format(tag, cmd, tag))
  local text = self.console:expect("</" .. tag .. " %d+>", timeout_ms or self.timeout_ms)
  local out, status = text:match("<" .. tag .. ">\r?\n(.-)</" .. tag .. " (%d+)>")
  self.console:expect(self.prompt, timeout_ms or self.timeout_ms)
  return (out or ""):gsub("\r\n", "\n"), tonumber(status)
end

-- Types `poweroff` and waits for the machine to end: its result.
function Shell:poweroff(timeout_ms)
  self.console:sendline("poweroff")
  return self.console:wait(timeout_ms or self.timeout_ms)
end

function Shell:close()
  if self.machine then self.machine:close() end
  self.machine = nil
end
Shell.__close = Shell.close

return M
