-- gdb_stub.lua - the stub side of spec/gdb_spec.lua and the README's gdb
-- transcript: spec/gdb_target.c's ELF in a long-mode guest, COM1 writes
-- collected by a Lua trap, and a gdb stub.
--   moonvisor spec/gdb_stub.lua PORT ELF            g:gdbserver{ ... }
--   moonvisor --gdb 127.0.0.1:PORT spec/gdb_stub.lua PORT ELF cli
--   moonvisor --gdb 127.0.0.1:PORT spec/gdb_stub.lua PORT ELF enter   (a cpu:enter() loop)
--   moonvisor spec/gdb_stub.lua PORT ELF fpu        x87/SSE values loaded by
--                                                    guest code first; their
--                                                    state printed at the end
local mv = require "moonvisor"
local load = require "moonvisor.load"

local port, elf, how = tonumber(arg[1]), arg[2], arg[3]
local g <close> = mv.guest{}
g:map(0, mv.vmo(0x400000))
local img = load.elf(g, elf)
local out = {}
g:trap("io", 0x3f8, 1, function(e) out[#out + 1] = string.char(e.data) end)
local cpu = g:vcpu{ entry = img.entry, mode = "long" }

if how == "fpu" then
  -- at 0x380000: fninit / fld1 / fldpi / movdqu xmm1, [v] / ldmxcsr [mx] / hlt
  -- v (0x380020): 00 11 22 .. ff;  mx (0x380030): 0x9f80 (the masks and FZ)
  g:write(0x380000, (("dbe3d9e8d9ebf30f6f0d120000000fae151b000000f4" .. ("90"):rep(10) ..
    "00112233445566778899aabbccddeeff809f0000"):gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)))
  cpu.rip = 0x380000
  print(("fpu code: %s"):format(cpu:run().type))
  cpu.rip = img.entry
end

if how ~= "cli" and how ~= "enter" then   -- (fpu too)
  local r = g:gdbserver{ host = "127.0.0.1", port = port, cpu = cpu, elf = elf, verbose = true }
  print(("session: %s clients=%d refused=%d bad_packets=%d"):format(r.how, r.clients, r.refused, r.bad_packets))
  if r.how == "kill" then return end
end
-- with --gdb: gdb first, then the rest of the run (or of an enter loop)
local e
if how == "enter" then
  repeat e = cpu:enter{ timeout_ms = 100 } until e.type ~= "io"
else
  e = cpu:run{ timeout_ms = 100 }
end
print(("then: %s"):format(e.type))
print(("uart: %s"):format(table.concat(out)))
print(("counter > 6: %s"):format(tostring(g:u64(img.symbols.counter) > 6)))
if how == "fpu" then
  local f = cpu:fpu()
  print(("xmm1 %s st0 %s mxcsr 0x%x es 0x%x"):format(f.xmm[2]:reverse():gsub(".", function(c) return ("%02x"):format(c:byte()) end),
    f.st[1]:reverse():gsub(".", function(c) return ("%02x"):format(c:byte()) end), f.mxcsr, cpu:sregs().es.selector))
end
