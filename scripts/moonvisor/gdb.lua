-- moonvisor.gdb: a GDB remote serial protocol stub, so real gdb can debug
-- a guest:  g:gdbserver{ host = "127.0.0.1", port = 1234, cpu = cpu,
-- wait = true, elf = path }  or  moonvisor --gdb 127.0.0.1:1234 script.lua.
--
-- One client at a time.  With cpus = { cpu0, cpu1, ... } every VCPU is a
-- thread of gdb's (1, 2, ...: qfThreadInfo, Hg/Hc select the one registers,
-- memory and steps go to, T stop replies name the VCPU that stopped);
-- `continue` runs them all (g:run) and any VCPU's stop stops all; a step
-- moves the selected one alone.  With cpu = cpu, one VCPU (thread 1).  The guest is stopped
-- while gdb looks at it; on `continue` it runs in slices of SLICE_MS
-- (cpu:enter{ timeout_ms = SLICE_MS }) and between two slices the stub polls
-- the connection for gdb's Ctrl-C (0x03, answered with a SIGINT stop) and
-- turns away a second client.  Trap handlers run inside the slices as usual.
--
-- Packets: framing with checksums and +/- acks, QStartNoAckMode, qSupported,
-- qXfer:features:read (target.xml: i386:x86-64 in long mode, i386
-- otherwise, decided when gdb connects), qXfer:exec-file:read (with elf:
-- gdb loads the symbols itself), ?, g/G, p/P, m/M/X (addresses are linear,
-- segments flat; with paging on they go through the guest's page tables:
-- 4-level with 1 GiB/2 MiB pages, PAE, 32-bit with 4 MiB pages), c/C, s/S,
-- vCont?/vCont, Z0/z0 (int3 patching; memory reads show the original bytes;
-- continuing from one steps over it), H, T, qC, qfThreadInfo, qAttached (1:
-- gdb detaches on quit), D, k/vKill, 0x03.  Z1-Z4 get the empty reply (no
-- hardware breakpoints or watchpoints: KVM_CAP_GUEST_DEBUG_HW_BPS is 0 on
-- these hosts and the soft backend has none; gdb falls back to software
-- watchpoints).  Registers (moonvisor.gdb_regs): general, segment
-- selectors (a write changes the selector only), x87 (st0-7, fctrl, fstat,
-- ftag as the full tag word; fiseg..fop read 0) and SSE (xmm, mxcsr)
-- through cpu:fpu()/cpu:write_fpu().  Page walks: moonvisor.paging.
--
-- Ends of a session: D (detach) removes the breakpoints and returns
-- { how = "detach" } with the guest stopped where it was, free to run on;
-- k returns { how = "kill" }.  A client that disconnects (or errors) is a
-- detach that keeps the server: breakpoints go, the guest stays stopped and
-- the stub waits for the next client.
local core = require "moonvisor.core"
local paging = require "moonvisor.paging"
local regs = require "moonvisor.gdb_regs"

local M = {}
M.SLICE_MS = 20
M.PACKET_SIZE = 0x4000   -- what qSupported announces; longer packets are refused with '-'

local LAYOUT = regs.LAYOUT
local lehex, tohex, fromhex = regs.lehex, regs.tohex, regs.fromhex
M.target_xml = regs.target_xml
M.translate = paging.walk   -- (g, sregs, linear) -> physical or nil

-- {====================================================== the session

local Session = {}
Session.__index = Session

local checksum = core.sum8   -- a packet's: its bytes' sum mod 256

local function escape(s) return (s:gsub("[%$#}%*]", function(c) return "}" .. string.char(c:byte() ~ 0x20) end)) end
local function unescape(s) return (s:gsub("}(.)", function(c) return string.char(c:byte() ~ 0x20) end)) end

function Session:log(fmt, ...)
  if self.server.verbose then io.stderr:write("moonvisor gdb: ", fmt:format(...), "\n") end
end

function Session:raw(s) self.conn:send(s) end

function Session:send(body)
  local pkt = "$" .. body .. ("#%02x"):format(checksum(body))
  self.last = pkt
  self:raw(pkt)
end

-- Turns away clients that connect while this one is served.
function Session:refuse_others()
  local ok, other = pcall(self.server.listener.accept, self.server.listener, 0)
  if ok and other then
    pcall(other.send, other, "$E10#a6")   -- busy; gdb reports the error and gives up
    other:close()
    self.server.refused = self.server.refused + 1
    self:log("refused a second client")
  end
end

-- Parses one packet, 0x03 or nothing from the input buffer.
function Session:parse()
  local buf = self.inbuf
  local i = 1
  while i <= #buf do
    local c = buf:sub(i, i)
    if c == "$" then
      local j = buf:find("#", i + 1, true)
      if not j or #buf < j + 2 then
        if #buf - i > self.server.packet_size + 3 then   -- oversized: drop it, resync at the next '$'
          local nxt = buf:find("$", i + 1, true)
          self.inbuf = nxt and buf:sub(nxt) or ""
          self.bad = self.bad + 1
          if not self.noack then self:raw("-") end
          return self:parse()
        end
        self.inbuf = buf:sub(i)
        return nil
      end
      local body, sum = buf:sub(i + 1, j - 1), buf:sub(j + 1, j + 2)
      self.inbuf = buf:sub(j + 3)
      local inner = body:find("$", 1, true)
      if inner then   -- a '$' inside: the start of the packet was lost; take the later one
        self.inbuf = body:sub(inner) .. buf:sub(j)
        return self:parse()
      end
      if #body > self.server.packet_size then
        self.bad = self.bad + 1
        if not self.noack then self:raw("-") end
      elseif tonumber(sum, 16) == checksum(body) or (self.noack and sum:match("^%x%x$")) then
        if not self.noack then self:raw("+") end
        return body
      else
        self.bad = self.bad + 1
        if not self.noack then self:raw("-") end
      end
      return self:parse()
    elseif c == "\3" then
      self.inbuf = buf:sub(i + 1)
      return "\3"
    elseif c == "-" and self.last and not self.noack then
      self:raw(self.last)   -- gdb did not get our last packet right
    end
    i = i + 1   -- '+', and garbage outside packets, are skipped
  end
  self.inbuf = ""
  return nil
end

-- The next packet (or "\3"); nil when the client went away.
function Session:read()
  while true do
    local p = self:parse()
    if p then return p end
    local ok, data = pcall(self.conn.recv, self.conn, 65536, 200)
    if not ok then return nil end
    if data then self.inbuf = self.inbuf .. data else self:refuse_others() end
  end
end

function Session:regs() return regs.read(self.cpu, self.arch) end

-- writes: { { reg = LAYOUT entry, hex = value }... }; false if one failed.
function Session:write_regs(writes) return regs.write(self.cpu, self.arch, writes) end

-- Reads len bytes at linear addr: as many as are readable (nil: none).
function Session:read_mem(addr, len)
  local s, parts, at = self.cpu:sregs(), {}, addr
  while len > 0 do
    local n = math.min(len, 0x1000 - (at & 0xfff))
    local pa = paging.walk(self.g, s, at)
    local ok, data = pcall(self.g.read, self.g, pa or -1, n)
    if not (pa and ok) then break end
    parts[#parts + 1] = data
    at, len = at + n, len - n
  end
  local data = table.concat(parts)
  if data == "" then return nil end
  local bytes
  for a, bp in pairs(self.bps) do   -- the original bytes where our int3s are
    if a >= addr and a < addr + #data then
      bytes = bytes or { data:byte(1, -1) }
      bytes[a - addr + 1] = bp.saved
    end
  end
  if bytes then
    for i, b in ipairs(bytes) do bytes[i] = string.char(b) end
    data = table.concat(bytes)
  end
  return data
end

function Session:write_mem(addr, data)
  local s = self.cpu:sregs()
  local off = 1
  while off <= #data do
    local at = addr + off - 1
    local n = math.min(#data - off + 1, 0x1000 - (at & 0xfff))
    local pa = paging.walk(self.g, s, at)
    if not pa then return false end
    local chunk = data:sub(off, off + n - 1)
    for a, bp in pairs(self.bps) do   -- keep our int3s, remember the new byte under them
      if a >= at and a < at + n then
        bp.saved = chunk:byte(a - at + 1)
        chunk = chunk:sub(1, a - at) .. "\xcc" .. chunk:sub(a - at + 2)
      end
    end
    if not pcall(self.g.write, self.g, pa, chunk) then return false end
    off = off + n
  end
  return true
end

function Session:insert_bp(addr)
  if self.bps[addr] then return true end
  local pa = paging.walk(self.g, self.cpu:sregs(), addr)
  local ok, saved = pcall(self.g.u8, self.g, pa or -1)
  if not (pa and ok) then return false end
  self.g:u8(pa, 0xcc)
  self.bps[addr] = { pa = pa, saved = saved }
  return true
end

function Session:remove_bp(addr)
  local bp = self.bps[addr]
  if not bp then return true end
  if self.g:u8(bp.pa) == 0xcc then self.g:u8(bp.pa, bp.saved) end
  self.bps[addr] = nil
  return true
end

function Session:remove_all()
  for addr in pairs(self.bps) do pcall(self.remove_bp, self, addr) end
end

-- {------------------------------------------------------ running

local SIG = { INT = 2, ILL = 4, TRAP = 5, ABRT = 6, FPE = 8, KILL = 9, SEGV = 11 }
local VECTOR_SIG = { [0] = SIG.FPE, [6] = SIG.ILL, [13] = SIG.SEGV, [14] = SIG.SEGV, [12] = SIG.SEGV,
                     [11] = SIG.SEGV, [10] = SIG.SEGV }

-- The console message for exits that are not a debug stop (gdb prints it).
function Session:console(text)
  pcall(self.send, self, "O" .. tohex(text .. "\n"))
end

-- A T stop reply; the PC is in it so gdb needs no register read.
function Session:stop_reply(sig, extra)
  local pcreg = self.arch == "amd64" and 16 or 8
  local ok, rip = pcall(function() return self.cpu.rip end)
  local reply = ("T%02x%s%02x:%s;thread:%x;"):format(sig, extra or "", pcreg,
    lehex(ok and rip or 0, self.arch == "amd64" and 64 or 32), self:tid(self.cpu))
  self.stopped = reply
  return reply
end

local function describe(e)
  local parts = {}
  for k, v in pairs(e) do
    if k ~= "type" then parts[#parts + 1] = ("%s=%s"):format(k, math.type(v) == "integer" and ("0x%x"):format(v) or tostring(v)) end
  end
  table.sort(parts)
  return ("moonvisor: %s exit %s"):format(e.type, table.concat(parts, " "))
end

-- What gdb hears about an exit.
function Session:report(e)
  if e.type == "debug" then
    local rip = self.cpu.rip
    if e.exception == 3 and self.bps[rip] then return self:stop_reply(SIG.TRAP, "swbreak:;") end
    return self:stop_reply(SIG.TRAP)
  elseif e.type == "kick" then
    return self:stop_reply(SIG.INT)
  elseif e.type == "exception" then
    self:console(describe(e))
    return self:stop_reply(VECTOR_SIG[e.vector] or SIG.TRAP)
  elseif e.type == "shutdown" then
    self:console(describe(e))
    return self:stop_reply(SIG.KILL)
  end
  self:console(describe(e))   -- hlt, unclaimed io/mem, ...
  return self:stop_reply(SIG.TRAP)
end

function Session:enter(opts)
  while true do
    local ok, e = pcall(self.cpu.enter, self.cpu, opts)
    if not ok then
      self:console("moonvisor: " .. tostring(e))
      io.stderr:write("moonvisor gdb: ", tostring(e), "\n")
      return nil
    end
    local absorb = self.server.absorb
    if not (absorb and e.type ~= "timeout" and e.type ~= "debug" and absorb(e, self.cpu)) then return e end
  end
end

-- The machine around the VCPU ended (the server's `finished` says with which
-- status): gdb hears "W<status>", as when a process exits.
function Session:exited()
  local f = self.server.finished
  local status = f and f()
  if status then return ("W%02x"):format(status & 0xff), "exit" end
  return nil
end

-- One instruction; a breakpoint of ours at rip is stepped over.
function Session:step1()
  local rip = self.cpu.rip
  local bp = self.bps[rip]
  if bp then self.g:u8(bp.pa, bp.saved) end
  self.cpu:debug { singlestep = true, breakpoints = true }
  local e = self:enter()
  self.cpu:debug { singlestep = false, breakpoints = true }
  if bp and self.bps[rip] == bp then self.g:u8(bp.pa, 0xcc) end
  return e
end

function Session:step()
  local e = self:step1()
  local w, how = self:exited()
  if w then return w, how end
  if not e then return self:stop_reply(SIG.ABRT) end
  return self:report(e)
end

-- gdb's thread id of a VCPU: its place in the server's list, from 1.
function Session:tid(cpu)
  for i, c in ipairs(self.cpus) do if c == cpu then return i end end
  return 1
end

-- Polls the connection between two slices: true when gdb sent Ctrl-C,
-- nil when it went away.
function Session:poll_break()
  local ok, data = pcall(self.conn.recv, self.conn, 65536, 0)
  if not ok then return nil end
  if data then
    local brk = data:find("\3", 1, true)
    if brk then
      self.inbuf = self.inbuf .. data:sub(brk + 1)
      return true
    end
    self.inbuf = self.inbuf .. data   -- acks; anything else waits for the stop
  end
  self:refuse_others()
  return false
end

-- Steps the current VCPU off the breakpoint at its rip (a continue there
-- would stop at once).  Returns nothing when it stepped, else the reply
-- that ends the continue (the guest exited, the step failed, or stopped on
-- something other than the single step).
function Session:step_off_breakpoint()
  local e = self:step1()
  local w, how = self:exited()
  if w then return w, how end
  if not e then return self:stop_reply(SIG.ABRT) end
  if not (e.type == "debug" and e.exception == 1) then return self:report(e) end
end

-- continue with several VCPUs: each on a breakpoint steps over it, then
-- g:run runs them all in slices; the VCPU whose exit ended a slice becomes
-- the current thread.
function Session:continue_all()
  local current = self.cpu
  for _, c in ipairs(self.cpus) do
    if self.bps[c.rip] then
      self.cpu = c
      local w, how = self:step_off_breakpoint()
      if w then return w, how end
    end
  end
  self.cpu = current
  for _, c in ipairs(self.cpus) do c:debug { singlestep = false, breakpoints = next(self.bps) ~= nil } end
  local opts, absorb = { timeout_ms = self.server.slice_ms }, self.server.absorb
  while true do
    local ok, res = pcall(self.g.run, self.g, self.cpus, opts)
    if not ok then
      self:console("moonvisor: " .. tostring(res))
      io.stderr:write("moonvisor gdb: ", tostring(res), "\n")
      return self:stop_reply(SIG.ABRT)
    end
    local w, how = self:exited()
    if w then return w, how end
    if res.reason ~= "timeout" then
      local e = res.exit or { type = res.reason == "halted" and "hlt" or "kick" }
      if not (absorb and res.exit and e.type ~= "debug" and absorb(e, res.cpu)) then
        self.cpu = res.cpu or self.cpu
        return self:report(e)
      end
    else
      local brk = self:poll_break()
      if brk == nil then return nil end
      if brk then return self:stop_reply(SIG.INT) end
    end
  end
end

-- Runs in slices until an exit gdb must hear about, a Ctrl-C or the
-- client leaving (then: nil).
function Session:continue()
  if #self.cpus > 1 then return self:continue_all() end
  if self.bps[self.cpu.rip] then
    local w, how = self:step_off_breakpoint()
    if w then return w, how end
  end
  -- int3 exits only while gdb has breakpoints: where the host does not
  -- intercept int3, catching them means single-stepping (moonvisor.breakpoints).
  self.cpu:debug { singlestep = false, breakpoints = next(self.bps) ~= nil }
  local opts = { timeout_ms = self.server.slice_ms }
  while true do
    local e = self:enter(opts)
    local w, how = self:exited()
    if w then return w, how end
    if not e then return self:stop_reply(SIG.ABRT) end
    if e.type ~= "timeout" then return self:report(e) end
    local brk = self:poll_break()
    if brk == nil then return nil end
    if brk then return self:stop_reply(SIG.INT) end
  end
end

-- }------------------------------------------------------

local function xfer(data, off, len)
  if off >= #data then return "l" end
  local chunk = data:sub(off + 1, off + len)
  return (off + len >= #data and "l" or "m") .. chunk
end

-- Answers one packet: the reply (nil: none), and "detach"/"kill"/"gone" to end.
function Session:handle(p)
  local c = p:sub(1, 1)
  if p == "\3" then return self.stopped end   -- already stopped
  if c == "?" then return self.stopped end
  if c == "g" then return table.concat(self:regs()) end
  if c == "G" then
    local hex, writes, pos = p:sub(2), {}, 1
    for _, reg in ipairs(LAYOUT[self.arch]) do
      local n = reg.bits // 4
      if pos + n - 1 > #hex then break end
      writes[#writes + 1] = { reg = reg, hex = hex:sub(pos, pos + n - 1) }
      pos = pos + n
    end
    return self:write_regs(writes) and "OK" or "E01"
  end
  if c == "p" then
    local n = tonumber(p:sub(2), 16)
    if not n or not LAYOUT[self.arch][n + 1] then return "E01" end
    return self:regs()[n + 1]
  end
  if c == "P" then
    local n, v = p:match("^P(%x+)=(%x+)$")
    local reg = n and LAYOUT[self.arch][tonumber(n, 16) + 1]
    if not reg then return "E01" end
    return self:write_regs { { reg = reg, hex = v } } and "OK" or "E01"
  end
  if c == "m" then
    local a, l = p:match("^m(%x+),(%x+)$")
    if not a then return "E01" end
    local data = self:read_mem(tonumber(a, 16), math.min(tonumber(l, 16), (self.server.packet_size - 4) // 2))
    return data and tohex(data) or "E14"
  end
  if c == "M" then
    local a, l, hex = p:match("^M(%x+),(%x+):(%x*)$")
    local data = hex and fromhex(hex)
    if not data or #data ~= tonumber(l, 16) then return "E01" end
    return self:write_mem(tonumber(a, 16), data) and "OK" or "E14"
  end
  if c == "X" then
    local a, l, bin = p:match("^X(%x+),(%x+):(.*)$")
    if not a then return "E01" end
    local data = unescape(bin)
    if #data ~= tonumber(l, 16) then return "E01" end
    if #data == 0 then return "OK" end   -- gdb's probe for X support
    return self:write_mem(tonumber(a, 16), data) and "OK" or "E14"
  end
  if c == "c" or c == "s" or c == "C" or c == "S" then
    local addr = p:match(c:lower() == c and "^.(%x+)$" or "^.%x+;(%x+)$")
    if addr then self.cpu.rip = tonumber(addr, 16) end
    local r
    local how
    if c:lower() == "s" then r, how = self:step() else r, how = self:continue() end
    if not r then return nil, "gone" end
    return r, how
  end
  if p == "vCont?" then return "vCont;c;C;s;S" end
  if p:sub(1, 6) == "vCont;" then
    for action in p:sub(7):gmatch("[^;]+") do
      local a, tid = action:match("^(%a)%x*:?(.*)$")
      local n = tid and tonumber(tid:match("^p1%.(%x+)$") or tid:match("^(%x+)$") or "", 16)
      if a and (tid == "" or tid == "-1" or tid == "p1.-1" or (n and self.cpus[n])) then
        if n and self.cpus[n] then self.cpu = self.cpus[n] end
        if a == "s" or a == "S" then return self:step() end
        if a == "c" or a == "C" then
          local r, how = self:continue()
          if not r then return nil, "gone" end
          return r, how
        end
        if a == "t" then return self.stopped end
      end
    end
    return "E01"
  end
  if c == "Z" or c == "z" then
    local kind, a = p:match("^[Zz](%d),(%x+),%x+")
    if not kind then return "E01" end
    if kind ~= "0" then return "" end   -- no hardware breakpoints or watchpoints
    local addr = tonumber(a, 16)
    if c == "Z" then return self:insert_bp(addr) and "OK" or "E14" end
    return self:remove_bp(addr) and "OK" or "E01"
  end
  if c == "H" then   -- Hg/Hc: the VCPU registers, memory and steps go to (0, -1: any)
    local tid = p:match("^H%a(.*)$")
    local n = tid and tid:match("^p1%.") and tonumber(tid:sub(4), 16) or tonumber(tid or "", 16)
    if not n then return "E01" end
    if n <= 0 then return "OK" end
    if not self.cpus[n] then return "E01" end
    self.cpu = self.cpus[n]
    return "OK"
  end
  if c == "T" then
    local n = tonumber(p:sub(2), 16)
    return n and self.cpus[n] and "OK" or "E01"
  end
  if c == "D" then return "OK", "detach" end
  if c == "k" then return nil, "kill" end
  if p:match("^vKill") then return "OK", "kill" end
  if p:sub(1, 11) == "qSupported:" or p == "qSupported" then
    local s = ("PacketSize=%x;qXfer:features:read+;QStartNoAckMode+;swbreak+"):format(self.server.packet_size)
    if self.server.elf then s = s .. ";qXfer:exec-file:read+" end
    return s
  end
  if p == "QStartNoAckMode" then
    self:send("OK")   -- acked, then no more acks either way
    self.noack = true
    return nil
  end
  if p:sub(1, 28) == "qXfer:features:read:target.x" then
    local off, len = p:match("^qXfer:features:read:target%.xml:(%x+),(%x+)$")
    if not off then return "E00" end
    return xfer(regs.target_xml(self.arch), tonumber(off, 16), tonumber(len, 16))
  end
  if p:sub(1, 20) == "qXfer:features:read:" then return "E00" end
  if p:sub(1, 21) == "qXfer:exec-file:read:" and self.server.elf then
    local off, len = p:match(":(%x+),(%x+)$")
    if not off then return "E00" end
    return xfer(self.server.elf, tonumber(off, 16), tonumber(len, 16))
  end
  if p == "qC" then return ("QC%x"):format(self:tid(self.cpu)) end
  if p == "qfThreadInfo" then
    local ids = {}
    for i = 1, #self.cpus do ids[i] = ("%x"):format(i) end
    return "m" .. table.concat(ids, ",")
  end
  if p:sub(1, 17) == "qThreadExtraInfo," then
    local n = tonumber(p:sub(18), 16)
    local c = n and self.cpus[n]
    return c and tohex(("VCPU %d"):format(c.id)) or "E01"
  end
  if p == "qsThreadInfo" then return "l" end
  if p:sub(1, 9) == "qAttached" then return "1" end
  return ""   -- not supported
end

-- Serves one client until it detaches, kills or goes away.
function Session:run()
  while true do
    local p = self:read()
    if not p then return "gone" end
    local ok, reply, how = pcall(self.handle, self, p)
    if not ok then   -- a bug or a guest error: tell gdb, keep serving
      io.stderr:write("moonvisor gdb: ", tostring(reply), "\n")
      reply, how = "E01", nil
    end
    if reply then
      if not pcall(self.send, self, escape(reply)) then return "gone" end
    end
    if how then return how end
  end
end

-- }======================================================

-- {====================================================== the server

local Server = { __name = "moonvisor.GdbServer" }
Server.__index = Server

function Server:__tostring()
  return ("GdbServer(%s:%d%s)"):format(self.host, self.port, self.listener and "" or ", closed")
end

local typename = core.typename

-- The arch gdb gets: amd64 when the VCPU is in 64-bit mode.
local function arch_of(cpu)
  local s = cpu:sregs()
  return (s.efer & 0x400 ~= 0 and s.cs.l == 1) and "amd64" or "i386"
end

-- Accepts clients until one detaches or kills.  Returns { how = "detach" |
-- "kill", clients = n, refused = n }.
-- Serves the client on conn until it detaches, kills, exits or goes away.
function Server:_session(conn)
  local cpu = self.cpu
  self.clients = self.clients + 1
  local arch = self.arch or arch_of(cpu)
  local session = setmetatable({ server = self, conn = conn, g = self.g, cpu = cpu, cpus = self.cpus, arch = arch, bps = {},
                                 inbuf = "", noack = false, bad = 0 }, Session)
  session:stop_reply(5)
  session:log("client %d connected (%s)", self.clients, arch)
  local how = session:run()
  session:remove_all()
  self.bad_packets = self.bad_packets + session.bad
  pcall(conn.close, conn)
  session:log("client %d: %s", self.clients, how)
  return how
end

function Server:_result(how)
  return { how = how, clients = self.clients, refused = self.refused, bad_packets = self.bad_packets }
end

-- Runs fn with the VCPUs' int3 exits on, then puts their debug flags back.
function Server:_debugging(fn)
  local old = {}
  for i, cpu in ipairs(self.cpus) do old[i] = cpu:debug { singlestep = false, breakpoints = true } end
  local ok, how = pcall(fn)
  for i, cpu in ipairs(self.cpus) do pcall(cpu.debug, cpu, old[i]) end
  if not ok then error(how, 0) end
  return how
end

function Server:serve()
  if not self.listener then error("gdbserver:serve: the server is closed", 2) end
  local how = self:_debugging(function()
    local how
    repeat
      local conn = self.listener:accept(self.accept_timeout_ms)
      if not conn then return "timeout" end
      how = self:_session(conn)
    until how ~= "gone"
    return how
  end)
  return self:_result(how)
end

-- srv:poll(): a client waiting to connect is served now (the guest stops
-- while gdb has it) and its end returned as serve() returns it; nil when
-- nobody is waiting.  A machine that runs its guest in slices calls this
-- between them, so gdb can attach at any time (QEMU's -gdb without -S).
function Server:poll()
  if not self.listener then return nil end
  local conn = self.listener:accept(0)
  if not conn then return nil end
  return self:_result(self:_debugging(function() return self:_session(conn) end))
end

function Server:close()
  if self.listener then self.listener:close() end
  self.listener = nil
end
Server.__close = Server.close
Server.__gc = Server.close

-- g:gdbserver{ host = "127.0.0.1", port = 1234, cpu = cpu, wait = true,
-- elf = path, verbose = false, quiet = false, absorb = fn, finished = fn }:
-- listens (port 0: any free port; srv.port says which).  wait = true (the
-- default) serves at once and returns what serve() returns, the listener
-- closed; wait = false returns the server: srv:serve() or srv:poll() later,
-- srv:close().  For a machine around the VCPU: absorb(exit, cpu) returning
-- true keeps the guest running through that exit (e.g. an access no device
-- claimed, which the machine counts), and finished() returning a status
-- ends the session with gdb's "W" (exited) packet and how = "exit".
function M.gdbserver(g, opts)
  if typename(g) ~= "moonvisor.Guest" then error("guest:gdbserver: expected a moonvisor.Guest, got " .. typename(g), 2) end
  if type(opts) ~= "table" then error("guest:gdbserver: options must be a table, got " .. type(opts), 2) end
  local cpus = opts.cpus
  if cpus ~= nil then   -- several VCPUs: gdb's threads 1, 2, ...
    if type(cpus) ~= "table" or #cpus == 0 then error("guest:gdbserver: cpus must be a list of VCPUs", 2) end
    for i, c in ipairs(cpus) do
      if typename(c) ~= "moonvisor.Vcpu" then error(("guest:gdbserver: cpus[%d] must be a moonvisor.Vcpu, got %s"):format(i, typename(c)), 2) end
      if c:guest() ~= g then error(("guest:gdbserver: cpus[%d] belongs to another guest"):format(i), 2) end
    end
    opts.cpu = opts.cpu or cpus[1]
  end
  if typename(opts.cpu) ~= "moonvisor.Vcpu" then
    error("guest:gdbserver: cpu must be a moonvisor.Vcpu, got " .. typename(opts.cpu), 2)
  end
  if opts.cpu:guest() ~= g then error("guest:gdbserver: cpu belongs to another guest", 2) end
  local host, port = opts.host or "127.0.0.1", opts.port or 1234
  if math.type(port) ~= "integer" then error("guest:gdbserver: port must be an integer, got " .. type(port), 2) end
  local elf
  if opts.elf ~= nil then
    if type(opts.elf) ~= "string" then error("guest:gdbserver: elf must be a path, got " .. type(opts.elf), 2) end
    local f = io.open(opts.elf, "rb")
    if not f then error("guest:gdbserver: cannot open " .. opts.elf, 2) end
    f:close()
    elf = opts.elf
    if elf:sub(1, 1) ~= "/" then   -- gdb opens it from its own directory
      local pwd = os.getenv("PWD")
      if pwd then elf = pwd .. "/" .. elf end
    end
  end
  local ok, listener = pcall(core.tcp_listen, host, port)
  if not ok then error((tostring(listener):gsub("^core%.tcp_listen", "guest:gdbserver")), 2) end
  local srv = setmetatable({ g = g, cpu = opts.cpu, cpus = cpus or { opts.cpu }, host = host, port = listener:port(), listener = listener,
                             elf = elf, verbose = opts.verbose, slice_ms = opts.slice_ms or M.SLICE_MS,
                             packet_size = M.PACKET_SIZE, accept_timeout_ms = opts.accept_timeout_ms,
                             arch = opts.arch, clients = 0, refused = 0, bad_packets = 0,
                             absorb = opts.absorb, finished = opts.finished }, Server)
  if not opts.quiet then
    io.stderr:write(("moonvisor: gdb stub listening on %s:%d (gdb: target remote %s:%d)\n"):format(
      host, srv.port, host, srv.port))
    io.stderr:flush()
  end
  if opts.wait == false then return srv end
  local r = srv:serve()
  srv:close()
  return r
end

-- "host:port" (or ":port", or "port") for --gdb.
function M.parse_address(s)
  local host, port = tostring(s):match("^(.-):(%d+)$")
  if not host then host, port = "", tostring(s):match("^(%d+)$") end
  if not port then error(("--gdb: expected host:port, got %q"):format(tostring(s)), 0) end
  return host ~= "" and host or "127.0.0.1", tonumber(port)
end

return M
