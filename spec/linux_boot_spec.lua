-- linux_boot_spec.lua - Debian's stock kernel (linux-image-amd64,
-- /boot/vmlinuz-*; LINUX_KERNEL overrides) with the busybox initramfs of
-- `make linux-initramfs`, booted on moonvisor.pc to a shell on COM1:
-- scripted through moonvisor.linux_shell, interactive through `moonvisor
-- run` in a real terminal (tmux), a panic, bad input.  Tagged #linux: `make
-- test` leaves it out; `make test-linux` runs it on the kvm backend (this
-- machine's KVM or the nested test VM), where a missing /dev/kvm FAILS.
-- Each boot takes tens of seconds in the nested VM (~90 us per exit).
local H = require "helpers"
local tmux = require "tmux"
local shell = require "moonvisor.linux_shell"

local exe = os.getenv("MOONVISOR_EXE") or "build/moonvisor"
local INITRD = "build/linux/initramfs.cpio.gz"
local BOOT_MS = 300000       -- a bound, not an expectation: 20-60 s in the nested VM
local CPUS = 2               -- SMP: the boot CPU starts the other through its local APIC

local function kernel()
  local k = os.getenv("LINUX_KERNEL")
  if k and k ~= "" then return k end
  local p = io.popen("ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -1")
  k = p:read("l")
  p:close()
  assert(k and k ~= "", "no kernel: /boot/vmlinuz-* (apt-get install linux-image-amd64) or LINUX_KERNEL")
  return k
end

local function slurp(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- The last n bytes of s, to show where a boot stopped.
local function tail(s, n) return #s > n and "..." .. s:sub(-n) or s end

-- moonvisor run ARGS, stdin /dev/null or the file `input`: stdout, stderr,
-- status.  A run still going after `seconds` (of wall time: a loaded
-- nested VM makes each `sleep` of the wait loop cost far more than it
-- sleeps) is killed (status 137) after its threads' states and kernel wait
-- channels are added to stderr.
local function run(args, seconds, input)
  local out, err = os.tmpname(), os.tmpname()
  local ok, _, code = os.execute(([[
MOONVISOR_BACKEND=%s %s run %s >%s 2>%s <%s & pid=$!
end=$(($(date +%%s) + %d)); while kill -0 $pid 2>/dev/null && [ $(date +%%s) -lt $end ]; do sleep 0.2; done
if kill -0 $pid 2>/dev/null; then
  echo "[still running after %d s: thread state wchan]" >>%s
  for t in /proc/$pid/task/*; do echo "$(cut -d' ' -f3 $t/stat) $(cat $t/wchan)" >>%s; done
  kill -9 $pid
fi
wait $pid]]):format(H.backend, exe, args, out, err, input or "/dev/null", seconds or 60, seconds or 60, err, err))
  local o, e = slurp(out), slurp(err)
  os.remove(out)
  os.remove(err)
  return o, e, ok and 0 or code
end

describe("Linux on moonvisor.pc #linux", function()
  local K = kernel()
  local version = K:match("vmlinuz%-(.+)$")

  it("boots to the busybox shell, answers uname -r and the processor count, and powers off with status 0", function()
    assert.truthy(io.open(INITRD), INITRD .. " is missing: make linux-initramfs")
    local sh <close> = shell.boot{ kernel = K, initrd = INITRD, append = "console=ttyS0", timeout_ms = BOOT_MS,
                                   cpus = CPUS }
    local log = sh:wait_prompt()
    assert.matches("Run /init as init process", log, 1, true)
    assert.matches("moonvisor-initramfs: Linux " .. version, log, 1, true)
    local out, status = sh:run("uname -r")
    assert.equals(version .. "\n", out)
    assert.equals(0, status)
    out, status = sh:run("cat /proc/cpuinfo | grep -c processor")
    assert.equals(CPUS .. "\n", out)
    assert.equals(CPUS, #sh.machine.all_cpus)
    assert.matches(("moonvisor-initramfs: Linux %s, %d CPU(s)"):format(version, CPUS), log, 1, true)
    assert.equals(0, status)
    out, status = sh:run("false")
    assert.equals("", out)
    assert.equals(1, status)
    -- a kernel message printed while a command runs stays out of its output
    -- (wait_prompt's `dmesg -n 1`) and is in the kernel's log.  The sleep
    -- lets the tty send the start marker first: the kernel writes its
    -- messages to the UART at once, past the tty's buffer.
    out = sh:run("sleep 1; echo '<4>moonvisor-spec: a kernel warning' >/dev/kmsg; echo done")
    assert.equals("done\n", out)
    assert.equals("1\n", (sh:run("dmesg | grep -c 'moonvisor-spec: a kernel warning'")))
    local r = sh:poweroff()
    assert.equals("poweroff", r.kind)
    assert.equals(0, r.status)
    io.stderr:write(("\n[linux_boot_spec: %s to the prompt in %.1f s on the %s backend]\n"):format(
      version, sh.boot_ms / 1000, H.backend))
  end)

  it("is interactive in a real terminal: ls / works, poweroff ends the run with status 0, the terminal is cooked again", function()
    local cmd = ("MOONVISOR_BACKEND=%s %s run -kernel %s -initrd %s -append console=ttyS0 -m 256 -smp 2 --stats; echo \"[status=$?]\"; stty -a | tr ' ' '\\n' | grep -x -e icanon -e -icanon; sleep 60"):format(
      H.backend, exe, K, INITRD)
    local s = tmux.start(cmd)
    finally(function() s:kill() end)
    s:wait("Ctrl-A x quits", nil, 30)
    s:wait("moonvisor-linux:/#", nil, BOOT_MS / 1000)
    s:line("ls /")
    s:wait("linuxrc", nil, 60)
    s:line("poweroff")
    s:wait("[status=0]", nil, 120)
    s:wait("icanon", "[status=0]", 15)
    assert.is_nil(s:screen():find("-icanon", 1, true))
    assert.matches("exits by device: ", s:screen(), 1, true)
  end)

  it("quits on Ctrl-A x with the terminal cooked again", function()
    local cmd = ("MOONVISOR_BACKEND=%s %s run -kernel %s -initrd %s -append console=ttyS0 -m 256; echo \"[status=$?]\"; stty -a | tr ' ' '\\n' | grep -x -e icanon -e -icanon; sleep 60"):format(
      H.backend, exe, K, INITRD)
    local s = tmux.start(cmd)
    finally(function() s:kill() end)
    s:wait("moonvisor-linux:/#", nil, BOOT_MS / 1000)
    s:keys("C-a", "x")
    s:wait("[status=0]", nil, 60)
    s:wait("icanon", "[status=0]", 15)
    assert.is_nil(s:screen():find("-icanon", 1, true))
    assert.matches("quit from the console (Ctrl-A x)", s:screen(), 1, true)
  end)

  it("takes a piped stdin as the console's input: the shell runs uname -r, then poweroff gives status 0", function()
    local input = os.tmpname()
    finally(function() os.remove(input) end)
    local f = assert(io.open(input, "w"))
    f:write("uname -r\npoweroff\n")
    f:close()
    local out, err, status = run(("-kernel %s -initrd %s -append console=ttyS0 -m 256"):format(K, INITRD),
                                 200, input)
    assert.equals(0, status, ("status %s; stderr: %s\nthe console's end: %s"):format(status, err, tail(out, 3000)))
    local at = out:find("moonvisor-linux:/# uname -r", 1, true)
    assert.truthy(at, "no echoed command: " .. tail(out, 3000))
    assert.truthy(out:find(version .. "\r\n", at, true) or out:find(version .. "\n", at, true), tail(out, 3000))
  end)

  it("ends a kernel panic with status 4 and the panic's text", function()
    -- no initramfs: the kernel cannot mount a root file system
    local out, err, status = run(("-kernel %s -append console=ttyS0 -m 256 -smp %d"):format(K, CPUS), 150)
    assert.equals(4, status, ("status %s; stderr: %s\nthe console's end: %s"):format(status, err, tail(out, 3000)))
    assert.matches("moonvisor run: the guest kernel panicked: Kernel panic - not syncing: VFS: Unable to mount root fs", err, 1, true)
    assert.matches("Kernel panic - not syncing", out, 1, true)
  end)

  it("refuses a file that is not a kernel, and an initrd larger than RAM, with status 2", function()
    local _, err, status = run("-kernel " .. INITRD)
    assert.equals(2, status)
    assert.matches("moonvisor run: ", err, 1, true)
    local big = os.tmpname()
    finally(function() os.remove(big) end)
    assert.is_true(os.execute("truncate -s 200M " .. big))
    _, err, status = run(("-kernel %s -initrd %s -m 128"):format(K, big))
    assert.equals(2, status)
    assert.matches(big, err, 1, true)
  end)
end)
