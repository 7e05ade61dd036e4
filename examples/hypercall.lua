-- hypercall.lua - a guest calling host functions written in Lua through an
-- IO-port ABI, in the style of Hyperlight: the guest (64-bit C,
-- examples/guests/hypercall.c) puts a function number in RAX and arguments
-- in RDI, RSI, RDX and does a 32-bit OUT to port 0x88; the handler reads
-- the registers with cpu:read_state(), calls the Lua function and puts its
-- result in RAX with cpu:write_state{ rax = ... }, then the guest resumes
-- after the OUT.  Host functions here: print (reads a guest string with
-- g:read), mul_add and fib (return values), get_greeting (writes a string
-- into a guest buffer with g:write).  Unknown numbers return -38 (-ENOSYS).
local mv = require "moonvisor"
local load = require "moonvisor.load"

local function guest_file(name) return load.guest_file(name, arg and arg[0]) end

local g <close> = mv.guest{}
g:map(0, mv.vmo(0x200000))
local image = load.elf(g, guest_file("hypercall.elf"))

local calls = {}   -- name -> count
local host = {}    -- number -> { name, function(a, b, c) -> result }
host[1] = { "print", function(ptr, len)
  if len < 0 or len > 4096 then return -22 end   -- -EINVAL: a guest cannot make us read 1 GiB
  io.write("[guest] ", g:read(ptr, len))
  return len
end }
host[2] = { "mul_add", function(a, b, c) return a * b + c end }
host[3] = { "get_greeting", function(buf, size)
  local s = ("greetings from Lua %s on the %s backend"):format(_VERSION:match("%d.*"), g:backend())
  s = s:sub(1, size - 1)
  g:write(buf, s .. "\0")
  return #s
end }
local fib_cache = { [0] = 0, 1 }
host[4] = { "fib", function(n)
  for i = #fib_cache + 1, n do fib_cache[i] = fib_cache[i - 1] + fib_cache[i - 2] end
  return fib_cache[n] or -22
end }

g:trap("io", 0x88, 4, function(_, cpu)
  local r = cpu:read_state()
  local fn = host[r.rax]
  local result = -38
  if fn then
    calls[fn[1]] = (calls[fn[1]] or 0) + 1
    result = fn[2](r.rdi, r.rsi, r.rdx)
  else
    calls["unknown"] = (calls["unknown"] or 0) + 1
  end
  cpu:write_state{ rax = result }
end)

local cpu = g:vcpu{ entry = image.entry, mode = "long" }
local exit = cpu:run{ timeout_ms = 10000 }
assert(exit.type == "hlt", "the guest did not halt: " .. exit.type)
local names, total = {}, 0
for name, n in pairs(calls) do names[#names + 1] = ("%s %d"):format(name, n); total = total + n end
table.sort(names)
print(("%d hypercalls: %s"):format(total, table.concat(names, ", ")))
