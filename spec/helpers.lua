-- helpers.lua - what the specs share: the backend under test, guests with
-- RAM and a real-mode VCPU, nasm-assembled snippets, fuzz configurations.
local mv = require "moonvisor"

local helpers = {}

-- The backend every spec guest uses.  "kvm" needs /dev/kvm: without it the
-- specs fail with the core's message, they are never skipped.
helpers.backend = os.getenv("MOONVISOR_BACKEND") or "kvm"
helpers.kvm = helpers.backend == "kvm"

function helpers.guest(opts)
  opts = opts or {}
  opts.backend = opts.backend or helpers.backend
  return mv.guest(opts)
end

-- Assembles nasm source, 16-bit unless bits says otherwise (org 0x1000
-- unless the source sets one).
local cache = {}
function helpers.asm(source, bits)
  bits = bits or 16
  local key = bits .. "\0" .. source
  if cache[key] then return cache[key] end
  local src = os.tmpname()
  local out = src .. ".bin"
  local f = assert(io.open(src, "w"))
  if not source:find("org%s") then f:write("org 0x1000\n") end
  f:write("bits ", bits, "\n", source, "\n")
  f:close()
  local ok = os.execute(("nasm -f bin -o %q %q 2>%q.err"):format(out, src, src))
  local bin
  if ok then
    local b = assert(io.open(out, "rb"))
    bin = b:read("a")
    b:close()
  else
    local e = io.open(src .. ".err"):read("a")
    os.remove(src); os.remove(src .. ".err")
    error("nasm failed: " .. e, 2)
  end
  os.remove(src); os.remove(out); os.remove(src .. ".err")
  cache[key] = bin
  return bin
end

-- A guest with 2 MiB of RAM at 0, code of the given mode at 0x1000 and a
-- VCPU there in that mode ("protected" or "long").
function helpers.moded(mode, source, opts)
  local g = helpers.guest(opts)
  local ram = mv.vmo(0x200000)
  g:map(0, ram)
  g:write(0x1000, helpers.asm(source, mode == "long" and 64 or 32))
  local cpu = g:vcpu{ entry = 0x1000, mode = mode }
  return g, cpu, ram
end

-- A guest with 64 KiB of RAM at 0, the code at 0x1000 and a VCPU there.
function helpers.real(source, opts)
  local g = helpers.guest(opts)
  local ram = mv.vmo(0x10000)
  g:map(0, ram)
  g:write(0x1000, helpers.asm(source))
  local cpu = g:vcpu{ entry = 0x1000 }
  return g, cpu, ram
end

-- moonvisor.fuzz's configuration for a long-mode target: `source` at
-- 0x1000 in 2 MiB of RAM, the input at 0x10000 (its length in rsi), done at
-- an `out` to port 0x501; `extra`'s fields added or replacing these.
function helpers.fuzz_config(source, extra)
  local c = {
    setup = function()
      local g = helpers.guest()
      g:map(0, mv.vmo(0x200000))
      g:write(0x1000, helpers.asm(source, 64))
      return g, g:vcpu{ entry = 0x1000, mode = "long" }
    end,
    input = { addr = 0x10000, max_len = 64, len_reg = "rsi" },
    done = function(exit) return exit.type == "io" and exit.port == 0x501 end,
    corpus = { "hello" },
    quiet = true, status = false, timeout_ms = 200,
  }
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end

-- Number of open file descriptors of this process, once the guests no
-- longer referenced are collected and the process-wide /dev/kvm fd (opened
-- once, kept for the life of the process) is open.
function helpers.fd_count()
  collectgarbage()
  collectgarbage()
  if helpers.kvm then mv.kvm_api_version() end
  local p = io.popen("ls /proc/" .. helpers.pid() .. "/fd | wc -l")
  local n = tonumber(p:read("a"))
  p:close()
  return n - 1   -- the ls itself inherits none, but popen's pipe is one
end

-- Runs a shell command; returns its output (stdout and stderr) and its
-- exit code (0 on success).
function helpers.sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok and 0 or code
end

-- A new temporary file holding bytes; returns its path (the caller removes it).
function helpers.tmpfile(bytes)
  local path = os.tmpname()
  local f = io.open(path, "wb")
  f:write(bytes)
  f:close()
  return path
end

function helpers.pid()
  local f = io.open("/proc/self/stat")
  local pid = f:read("n")
  f:close()
  return pid
end

return helpers
