-- moonvisor.dev: what the device models share, and the run loop that keeps
-- accesses to unclaimed ports and addresses visible instead of fatal.
--
--   local dev = require "moonvisor.dev"
--   local exit, u = dev.run(cpu)          -- enter until something other than
--                                          -- an unclaimed io/mem exit
--   u.io[0x61], u.mem[0xfee00000], u.total, u.reads, u.writes, u:report()
--
-- The devices themselves live in moonvisor.dev.uart, .cmos, .i8042, .misc;
-- each is usable alone (`require("moonvisor.dev.uart").new(g, opts)`).
local dev = {}

-- dev.bytewise(base, count, read, write[, obj]) -> trap handler
-- For devices made of 8-bit registers (8250, CMOS, i8042): an access wider
-- than a byte is split into byte accesses at consecutive ports, low byte
-- first, as the ISA bus does.  Ports past the device read 0xff and ignore
-- writes.  read(port, cpu) returns a byte; write(port, byte, cpu).  With
-- obj, read and write are its methods: read(obj, port, cpu) and
-- write(obj, port, byte, cpu), called without a closure in between (a byte
-- access, the common one, is then one Lua call from the handler).
function dev.bytewise(base, count, read, write, obj)
  local last = base + count - 1
  local function wide(e, cpu, rd, wr)
    local port, size = e.port, e.size
    if e.write then
      local v = e.data
      for i = 0, size - 1 do
        if port + i <= last then wr(port + i, (v >> (8 * i)) & 0xff, cpu) end
      end
      return
    end
    local v = 0
    for i = 0, size - 1 do
      local b = port + i <= last and rd(port + i, cpu) or 0xff
      v = v | (b << (8 * i))
    end
    return v
  end
  if obj then
    local function rd(port, cpu) return read(obj, port, cpu) end
    local function wr(port, v, cpu) write(obj, port, v, cpu) end
    return function(e, cpu)
      if e.size ~= 1 then return wide(e, cpu, rd, wr) end
      if e.write then write(obj, e.port, e.data & 0xff, cpu) return end
      return read(obj, e.port, cpu)
    end
  end
  return function(e, cpu)
    if e.size ~= 1 then return wide(e, cpu, read, write) end
    if e.write then write(e.port, e.data & 0xff, cpu) return end
    return read(e.port, cpu)
  end
end

-- The unclaimed-access counter: io[port] and mem[addr] count accesses that no
-- trap claimed; reads and writes count both kinds; total is their sum.
local Unclaimed = {}
Unclaimed.__index = Unclaimed

function dev.unclaimed()
  return setmetatable({ io = {}, mem = {}, total = 0, reads = 0, writes = 0 }, Unclaimed)
end

-- Counts `exit` when it is an unclaimed io or mem exit; returns true then,
-- false for any other exit.  (The exit table is reused by the core: only its
-- fields are kept.)
function Unclaimed:count(exit)
  local t = exit.type
  local where
  if t == "io" then where, t = self.io, exit.port
  elseif t == "mem" then where, t = self.mem, exit.addr
  else return false end
  where[t] = (where[t] or 0) + 1
  self.total = self.total + 1
  if exit.write then self.writes = self.writes + 1 else self.reads = self.reads + 1 end
  return true
end

-- "io 0x61: 3\nmem 0xfee00000: 1" (sorted by kind, then by address).
function Unclaimed:report()
  local lines = {}
  for _, kind in ipairs{ "io", "mem" } do
    local keys = {}
    for k in pairs(self[kind]) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do lines[#lines + 1] = ("%s 0x%x: %d"):format(kind, k, self[kind][k]) end
  end
  return table.concat(lines, "\n")
end

-- dev.run(cpu[, opts]) -> exit, unclaimed
-- Calls cpu:enter() in a loop.  An io or mem exit (an access no trap claimed:
-- the instruction has completed, an IN or a read got all-ones) is counted and
-- the guest resumes; any other exit (hlt, shutdown, kick, exception, ...)
-- ends the loop and is returned with the counter.
-- opts.unclaimed: a counter from dev.unclaimed() to add to (one is made);
-- opts.on_unclaimed(exit, cpu): called for each unclaimed access (e.g. to log);
-- opts.limit: stop after that many unclaimed accesses, returning the last one
--   (a guest polling an absent device would otherwise spin forever).
function dev.run(cpu, opts)
  opts = opts or {}
  local u = opts.unclaimed or dev.unclaimed()
  local on, limit = opts.on_unclaimed, opts.limit
  local n = 0
  while true do
    local e = cpu:enter()
    if not u:count(e) then return e, u end
    if on then on(e, cpu) end
    n = n + 1
    if limit and n >= limit then return e, u end
  end
end

return dev
