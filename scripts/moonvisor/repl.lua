-- moonvisor.repl: the Lua side of the REPL and its debugging helpers.
-- The executable prints results with repl.print and completes names with
-- repl.complete; repl.install(_G) makes the helpers globals.  Scripts use
-- them too:  local R = require "moonvisor.repl"; print(R.regs(cpu))
--
--   regs(cpu)                 registers, decoded rflags, the CPU mode
--   x(g, addr[, len])         hexdump with ASCII (g: a guest: physical
--                             addresses; a vcpu: linear ones)
--   dis(cpu[, addr[, n]])     disassembly in the current mode (capstone)
--   step(cpu[, n])            single-steps n instructions
--   trace(cpu[, n[, out]])    steps, printing each instruction first
--   breakpoint(cpu[, addr])   an int3 breakpoint (no addr: at rip)
--   breakpoints(cpu)          the list of breakpoints
--   delete(cpu[, addr or id]) removes one breakpoint (none given: all)
--   cont(cpu[, opts])         runs until a breakpoint, hlt or another exit
--   travel(g, cpu, log[, every])  a recorded run to go to any exit: t:to(K)
--                             (moonvisor.timetravel; snapshots every `every`)
--
-- Addresses given with a vcpu are linear (the rip of a stop is cs.base +
-- rip); with paging on they go through the guest's page tables
-- (moonvisor.paging), page by page: bytes on an unmapped page read as "??".
-- Breakpoints are kept by linear address and patch the physical byte
-- behind it.
local core = require "moonvisor.core"
local paging = require "moonvisor.paging"

local M = {}

-- {====================================================== pretty printer

-- Integer fields shown in hexadecimal: registers, addresses, control registers.
local HEX = {}
for name in ([[rax rbx rcx rdx rsi rdi rbp rsp r8 r9 r10 r11 r12 r13 r14 r15 rip
  rflags addr address data port base limit cr0 cr2 cr3 cr4 cr8 efer apic_base
  dr6 dr7]]):gmatch("%S+") do HEX[name] = true end

local KEYWORDS = {}
for w in ([[and break do else elseif end false for function goto if in local nil
  not or repeat return then true until while]]):gmatch("%a+") do KEYWORDS[w] = true end

local function quote(s)
  return (("%q"):format(s):gsub("\\\n", "\\n"))
end

local function scalar(v, key)
  if math.type(v) == "integer" and HEX[key] then return ("0x%x"):format(v) end
  if type(v) == "string" then return quote(v) end
  return tostring(v)
end

local function keyrepr(k)
  if type(k) == "string" and k:match("^[%a_][%w_]*$") and not KEYWORDS[k] then return k end
  return "[" .. scalar(k) .. "]"
end

-- Keys in a stable order: the array part, then "type" (exits), then the rest sorted.
local function sortedkeys(t)
  local n, keys = #t, {}
  for k in pairs(t) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b)
    if a == "type" or b == "type" then return a == "type" and b ~= "type" end
    local ta, tb = type(a), type(b)
    if ta ~= tb then return ta < tb end
    if ta == "number" or ta == "string" then return a < b end
    return tostring(a) < tostring(b)
  end)
  return n, keys
end

local MAXITEMS, MAXDEPTH, WIDTH = 100, 6, 78

local function render(v, key, indent, seen)
  if type(v) ~= "table" then return scalar(v, key) end
  local mt = getmetatable(v)
  if type(mt) == "table" and rawget(mt, "__tostring") then return tostring(v) end
  if seen[v] then return "<cycle>" end
  if #indent >= 2 * MAXDEPTH then return "{...}" end
  seen[v] = true
  local inner = indent .. "  "
  local parts, n, keys = {}, sortedkeys(v)
  for i = 1, n do
    if #parts == MAXITEMS then break end
    parts[#parts + 1] = render(v[i], nil, inner, seen)
  end
  for _, k in ipairs(keys) do
    if #parts == MAXITEMS then parts[#parts + 1] = "..."; break end
    parts[#parts + 1] = keyrepr(k) .. " = " .. render(v[k], k, inner, seen)
  end
  seen[v] = nil
  if #parts == 0 then return "{}" end
  local one = "{ " .. table.concat(parts, ", ") .. " }"
  if #indent + #one <= WIDTH and not one:find("\n") then return one end
  return "{\n" .. inner .. table.concat(parts, ",\n" .. inner) .. "\n" .. indent .. "}"
end

-- A value as the REPL shows it: strings as they are (as lua does), tables
-- (exits, register tables) laid out with registers and addresses in hex.
function M.pretty(v)
  if type(v) == "string" then return v end
  return render(v, nil, "", {})
end

-- What the REPL prints for the results of a statement, tab-separated.
function M.print(...)
  local out = {}
  for i = 1, select("#", ...) do out[i] = M.pretty((select(i, ...))) end
  io.write(table.concat(out, "\t"), "\n")
  io.flush()
end

-- }======================================================

-- {====================================================== completion

-- The names reachable from v: table keys and, through metatables, the keys
-- of __index tables (also the table a C __index closure keeps as upvalue,
-- as moonvisor.Vcpu's does).
local function names(v, out, depth)
  if depth > 4 then return end
  if type(v) == "table" then
    for k in next, v do
      if type(k) == "string" then out[k] = out[k] or v end
    end
  end
  local mt = getmetatable(v)
  if type(mt) ~= "table" then return end
  local index = rawget(mt, "__index")
  if type(index) == "table" then
    names(index, out, depth + 1)
  elseif type(index) == "function" then
    for i = 1, 8 do
      local name, up = debug.getupvalue(index, i)
      if name == nil then break end
      if type(up) == "table" then names(up, out, depth + 1) end
    end
  end
end

-- Completions of word, e.g. "cpu:re" -> { "cpu:read_state" }.  The word is
-- a chain of names joined by "." with an optional ":" before the last one.
function M.complete(word, env)
  env = env or _G
  local prefix, sep, partial = word:match("^(.-)([%.:]?)([%a_]?[%w_]*)$")
  if not prefix then return {} end
  local v = env
  if sep ~= "" then
    if not prefix:match("^[%a_][%w_]*$") and not prefix:match("^[%a_][%w_%.]*[%w_]$") then return {} end
    for name in prefix:gmatch("[^.]+") do
      local ok, nv = pcall(function() return v[name] end)
      if not ok or nv == nil then return {} end
      v = nv
    end
  elseif prefix ~= "" then
    return {}
  end
  local found = {}
  names(v, found, 0)
  local out = {}
  for k in pairs(found) do
    if k:sub(1, #partial) == partial and k:match("^[%a_][%w_]*$") then
      local ok, fv = pcall(function() return v[k] end)
      if sep ~= ":" or (ok and type(fv) == "function") then out[#out + 1] = prefix .. sep .. k end
    end
  end
  if sep == "" then
    for k in pairs(KEYWORDS) do
      if k:sub(1, #partial) == partial then out[#out + 1] = k end
    end
  end
  table.sort(out)
  return out
end

-- }======================================================

-- {====================================================== machine state

local typename = core.typename

local function checkvcpu(cpu, what)
  if typename(cpu) ~= "moonvisor.Vcpu" then
    error(what .. ": expected a moonvisor.Vcpu, got " .. typename(cpu), 3)
  end
  return cpu
end

-- The CPU mode and the default operand size for the disassembler.
local function mode_of(s)
  if s.cr0 & 1 == 0 then return "real", 16 end
  local bits = s.cs.db == 1 and 32 or 16
  if s.efer & 0x400 ~= 0 then
    if s.cs.l == 1 then return "long", 64 end
    return "compat", bits
  end
  return "protected", bits
end
M.mode_of = mode_of

-- The linear address of the next instruction, the sregs and the mode's bits.
local function where(cpu)
  local s = cpu:sregs()
  local _, bits = mode_of(s)
  return s.cs.base + cpu.rip, s, bits
end

-- Breakpoints live with their guest (its memory holds the int3s):
-- state[guest] = { next = id, list = { bp... }, at = { [addr] = bp }, flags = { [cpu] = old } }.
local state = setmetatable({}, { __mode = "k" })

local function bpstate(g)
  local st = state[g]
  if not st then
    st = { next = 1, list = {}, at = {}, flags = setmetatable({}, { __mode = "k" }) }
    state[g] = st
  end
  return st
end

-- Up to len bytes at addr as a table of byte values (false: not readable),
-- with the original bytes where breakpoints are.  With s (cpu:sregs()),
-- addr is linear and each page goes through the page tables; without, addr
-- is physical.
local function readbytes(g, addr, len, s)
  local bytes, st, off = {}, state[g], 0
  while off < len do
    local at = addr + off
    local n = math.min(len - off, 0x1000 - (at & 0xfff))
    local pa = at
    if s then pa = paging.walk(g, s, at) end
    local ok, data = false, nil
    if pa then ok, data = pcall(g.read, g, pa, n) end
    for i = 1, n do
      if ok then
        bytes[off + i] = data:byte(i)
      elseif pa then
        local okb, b = pcall(g.u8, g, pa + i - 1)
        bytes[off + i] = okb and b
      else
        bytes[off + i] = false
      end
    end
    if pa and st then
      for _, bp in pairs(st.at) do
        local i = bp.pa - pa + 1
        if i >= 1 and i <= n and bytes[off + i] then bytes[off + i] = bp.saved end
      end
    end
    off = off + n
  end
  return bytes
end

local function bytestring(bytes)
  local chars = {}
  for i, b in ipairs(bytes) do
    if not b then break end
    chars[i] = string.char(b)
  end
  return table.concat(chars)
end

-- Instructions at linear addr: a list of capstone's tables (core.disasm).
local function decode(cpu, addr, n, bits)
  local code = bytestring(readbytes(cpu:guest(), addr, 15 * n, cpu:sregs()))
  return core.disasm(code, addr, bits, n)
end

local function insntext(i)
  if not i then return "(bad)" end
  return i.op_str ~= "" and i.mnemonic .. " " .. i.op_str or i.mnemonic
end

-- }======================================================

-- {====================================================== views

-- The set flags of rflags by name, e.g. "PF ZF IF".
function M.flags(rflags) return require("moonvisor.x86").describe("rflags", rflags) end

-- A compact register view: 32-bit registers outside long mode.
function M.regs(cpu)
  checkvcpu(cpu, "regs")
  local r, s = cpu:read_state(), cpu:sregs()
  local mode = mode_of(s)
  local long = mode == "long" or mode == "compat"
  local fmt = long and "%016x" or "%08x"
  local function row(list)
    local cells = {}
    for i, name in ipairs(list) do cells[i] = ("%-3s " .. fmt):format(name, r[name]) end
    return table.concat(cells, "  ")
  end
  local lines = { row { "rax", "rbx", "rcx", "rdx" }, row { "rsi", "rdi", "rbp", "rsp" } }
  if long then
    lines[#lines + 1] = row { "r8", "r9", "r10", "r11" }
    lines[#lines + 1] = row { "r12", "r13", "r14", "r15" }
  end
  lines[#lines + 1] = ("rip " .. fmt .. "  rflags %08x [%s]"):format(r.rip, r.rflags, M.flags(r.rflags))
  local segs = {}
  for i, name in ipairs { "cs", "ds", "es", "ss", "fs", "gs" } do
    segs[i] = ("%s %04x"):format(name, s[name].selector)
  end
  lines[#lines + 1] = table.concat(segs, "  ")
  lines[#lines + 1] = ("mode %s  cr0 %08x  cr3 %08x  cr4 %08x  efer %08x  linear rip 0x%x"):format(
    mode, s.cr0, s.cr3, s.cr4, s.efer, s.cs.base + r.rip)
  local x86 = require "moonvisor.x86"
  lines[#lines + 1] = ("cr0 [%s]  cr4 [%s]  efer [%s]"):format(x86.describe("cr0", s.cr0), x86.describe("cr4", s.cr4),
                                                            x86.describe("efer", s.efer))
  return table.concat(lines, "\n")
end

-- A hexdump as hexdump -C prints it; "??" marks bytes that are not readable
-- (outside guest memory, or on a page the page tables do not map).  g: a
-- guest (addr is physical) or a vcpu (addr is linear).
function M.x(g, addr, len)
  local s
  if typename(g) == "moonvisor.Vcpu" then g, s = g:guest(), g:sregs() end
  if typename(g) ~= "moonvisor.Guest" then error("x: expected a moonvisor.Guest or Vcpu, got " .. typename(g), 2) end
  if math.type(addr) ~= "integer" then error("x: addr must be an integer, got " .. type(addr), 2) end
  len = len or 64
  local bytes = readbytes(g, addr, len, s)
  local lines = {}
  for off = 0, len - 1, 16 do
    local hex, ascii = {}, {}
    for i = 1, 16 do
      if off + i > len then break end
      local b = bytes[off + i]
      hex[i] = b and ("%02x"):format(b) or "??"
      ascii[i] = not b and "?" or (b >= 0x20 and b < 0x7f) and string.char(b) or "."
    end
    local h = table.concat(hex, " ", 1, math.min(8, #hex))
    if #hex > 8 then h = h .. "  " .. table.concat(hex, " ", 9) end
    lines[#lines + 1] = ("%08x  %-49s |%s|"):format(addr + off, h, table.concat(ascii))
  end
  return table.concat(lines, "\n")
end

-- Disassembly: "=>" marks rip, "*" a breakpoint.
function M.dis(cpu, addr, n)
  checkvcpu(cpu, "dis")
  local rip, _, bits = where(cpu)
  addr, n = addr or rip, n or 8
  local st = state[cpu:guest()]
  local lines = {}
  for _, i in ipairs(decode(cpu, addr, n, bits)) do
    local mark = (i.address == rip and "=>" or "  ") .. (st and st.at[i.address] and "*" or " ")
    local hex = i.bytes:gsub(".", function(c) return ("%02x "):format(c:byte()) end)
    lines[#lines + 1] = ("%s 0x%04x:  %-24s %s"):format(mark, i.address, hex, insntext(i))
  end
  if #lines == 0 then return ("0x%04x:  (no instruction)"):format(addr) end
  return table.concat(lines, "\n")
end

-- }======================================================

-- {====================================================== running

-- Where a step, cont or trace stopped: the exit, the linear rip and how.
-- Printed, it says so in one line with the next instruction.
local Stop = {}
Stop.__index = Stop
Stop.__name = "moonvisor.Stop"

function Stop:__tostring()
  if self.cpu then   -- cont{ cpu0, cpu1, ... }: which VCPU stopped the others
    local copy = setmetatable({}, Stop)
    for k, v in pairs(self) do copy[k] = v end
    copy.cpu = nil
    return ("vcpu %d: %s"):format(self.cpu.id, tostring(copy))
  end
  local at = ("0x%04x:  %s"):format(self.rip, self.insn)
  if self.how == "step" then return at end
  if self.how == "breakpoint" then return ("breakpoint %d at %s"):format(self.breakpoint.id, at) end
  if self.how == "int3" then return "int3 (not a breakpoint of ours) at " .. at end
  if self.how == "interrupted" then return "interrupted at " .. at end
  if self.how == "timeout" then return "timeout at " .. at end
  if self.how == "hlt" then return ("hlt: stopped at 0x%04x (after the hlt)"):format(self.rip) end
  return ("%s exit, now at %s\n%s"):format(self.type, at, M.pretty(self.exit))
end

local function stopped(cpu, e)
  local rip, _, bits = where(cpu)
  local st = state[cpu:guest()]
  local how = e.type
  local bp
  if e.type == "debug" and e.exception == 1 then
    how = "step"
  elseif e.type == "debug" and e.exception == 3 then
    bp = st and st.at[rip]
    how = bp and "breakpoint" or "int3"
  elseif e.type == "kick" then
    how = "interrupted"
  end
  return setmetatable({ exit = e, type = e.type, how = how, rip = rip, breakpoint = bp,
                        insn = insntext(decode(cpu, rip, 1, bits)[1]) }, Stop)
end

-- Sets some debug flags and returns the old ones (cpu:debug returns them).
local function setdebug(cpu, changes)
  local old = cpu:debug()
  local new = { singlestep = old.singlestep, breakpoints = old.breakpoints }
  for k, v in pairs(changes) do new[k] = v end
  cpu:debug(new)
  return old
end

-- One single-step enter.  A breakpoint at rip is stepped over: its original
-- byte goes back for the step and the int3 in again afterwards.
local function step1(cpu)
  local g = cpu:guest()
  local st = state[g]
  local rip = where(cpu)
  local bp = st and st.at[rip]
  if bp then g:u8(bp.pa, bp.saved) end
  local old = setdebug(cpu, { singlestep = true })
  local ok, e = pcall(cpu.enter, cpu)
  cpu:debug(old)
  if bp and st.at[rip] == bp then g:u8(bp.pa, 0xcc) end
  if not ok then error(e, 0) end
  return e
end

local function isstep(e) return e.type == "debug" and e.exception == 1 end

-- Steps n instructions (1 by default); stops early at any other exit.
function M.step(cpu, n)
  checkvcpu(cpu, "step")
  local e
  for _ = 1, n or 1 do
    e = step1(cpu)
    if not isstep(e) then break end
  end
  return stopped(cpu, e)
end

-- Steps n instructions (10 by default), printing each before it runs
-- through out (default: a line on stdout).
function M.trace(cpu, n, out)
  checkvcpu(cpu, "trace")
  out = out or function(line) io.write(line, "\n") end
  local e
  for _ = 1, n or 10 do
    local rip, _, bits = where(cpu)
    out(("0x%04x:  %s"):format(rip, insntext(decode(cpu, rip, 1, bits)[1])))
    e = step1(cpu)
    if not isstep(e) then break end
  end
  return stopped(cpu, e)
end

-- cont{ cpu0, cpu1, ... }: all of them at once (g:run), until a breakpoint
-- or exit of any stops them all; the Stop names the VCPU (stop.cpu).
local function cont_all(cpus, opts)
  if #cpus == 0 then error("cont: expected a moonvisor.Vcpu or a list of them, got an empty table", 3) end
  for i, c in ipairs(cpus) do
    if typename(c) ~= "moonvisor.Vcpu" then error(("cont: [%d] must be a moonvisor.Vcpu, got %s"):format(i, typename(c)), 3) end
  end
  local g = cpus[1]:guest()
  local st = state[g]
  for _, c in ipairs(cpus) do   -- a VCPU on a breakpoint steps over it first
    if st and st.at[where(c)] then
      local e = step1(c)
      if not isstep(e) then
        local s = stopped(c, e)
        s.cpu = c
        return s
      end
    end
  end
  local olds = {}
  for i, c in ipairs(cpus) do olds[i] = setdebug(c, { singlestep = false, breakpoints = true }) end
  local ok, res = pcall(g.run, g, cpus, opts)
  for i, c in ipairs(cpus) do c:debug(olds[i]) end
  if not ok then error(res, 0) end
  local c = res.cpu or cpus[1]
  local e = res.exit or { type = ({ halted = "hlt", stop = "kick" })[res.reason] or res.reason }
  local s = stopped(c, e)
  s.cpu, s.reason = c, res.reason
  return s
end

-- Runs until a breakpoint, hlt or any exit no handler consumed; a
-- breakpoint at rip is stepped over first.  opts: { timeout_ms = N }.
-- With a list of VCPUs, runs them all (cont_all).
function M.cont(cpu, opts)
  if typename(cpu) == "table" then return cont_all(cpu, opts) end
  checkvcpu(cpu, "cont")
  local st = state[cpu:guest()]
  if st and st.at[where(cpu)] then
    local e = step1(cpu)
    if not isstep(e) then return stopped(cpu, e) end
  end
  local old = setdebug(cpu, { singlestep = false, breakpoints = true })
  local ok, e = pcall(cpu.enter, cpu, opts)
  cpu:debug(old)
  if not ok then error(e, 0) end
  return stopped(cpu, e)
end

-- }======================================================

-- {====================================================== breakpoints

local Bp = { __name = "moonvisor.Breakpoint" }
Bp.__index = Bp
function Bp:__tostring() return ("breakpoint %d at 0x%04x"):format(self.id, self.addr) end

-- An int3 at addr (linear, through the page tables; default: rip).  Turns
-- on the VCPU's breakpoint exits so that cpu:run() and cpu:enter() stop
-- there too.
function M.breakpoint(cpu, addr)
  checkvcpu(cpu, "breakpoint")
  addr = addr or where(cpu)
  if math.type(addr) ~= "integer" then error("breakpoint: addr must be an integer, got " .. type(addr), 2) end
  local g = cpu:guest()
  local st = bpstate(g)
  if st.at[addr] then return st.at[addr] end
  local pa = paging.walk(g, cpu:sregs(), addr)
  if not pa then error(("breakpoint: 0x%x is not mapped by the page tables"):format(addr), 2) end
  local ok, saved = pcall(g.u8, g, pa)
  if not ok then error(("breakpoint: 0x%x is not in guest memory"):format(addr), 2) end
  for _, other in pairs(st.at) do   -- another linear address of the same byte
    if other.pa == pa then saved = other.saved end
  end
  g:u8(pa, 0xcc)
  local bp = setmetatable({ id = st.next, addr = addr, pa = pa, saved = saved }, Bp)
  st.next = st.next + 1
  st.at[addr] = bp
  st.list[#st.list + 1] = bp
  if st.flags[cpu] == nil then st.flags[cpu] = setdebug(cpu, { breakpoints = true }).breakpoints end
  return bp
end

-- The breakpoints of cpu's guest, in the order they were set.
function M.breakpoints(cpu)
  checkvcpu(cpu, "breakpoints")
  local st = state[cpu:guest()]
  return table.move(st and st.list or {}, 1, st and #st.list or 0, 1, {})
end

-- Removes the breakpoint with that id or at that address (none: all of
-- them) and puts the original byte back.  Returns how many went.
function M.delete(cpu, which)
  checkvcpu(cpu, "delete")
  local g = cpu:guest()
  local st = state[g]
  if not st then return 0 end
  local match = function(bp) return which == nil or bp.id == which end
  if which ~= nil then   -- an id first, else an address
    local byid = false
    for _, bp in ipairs(st.list) do byid = byid or bp.id == which end
    if not byid then match = function(bp) return bp.addr == which end end
  end
  local gone = 0
  for i = #st.list, 1, -1 do
    local bp = st.list[i]
    if match(bp) then
      st.at[bp.addr] = nil
      local shared = false   -- the int3 stays while another breakpoint uses the byte
      for _, other in pairs(st.at) do shared = shared or other.pa == bp.pa end
      if not shared and g:u8(bp.pa) == 0xcc then g:u8(bp.pa, bp.saved) end
      table.remove(st.list, i)
      gone = gone + 1
    end
  end
  if #st.list == 0 then   -- breakpoint exits back to what each VCPU had
    for c, had in pairs(st.flags) do
      if pcall(setdebug, c, { breakpoints = had }) then st.flags[c] = nil end
    end
  end
  return gone
end

-- }======================================================

M.help = [==[
moonvisor REPL: Lua 5.4 with moonvisor loaded as mv.
  regs(cpu)  x(g, addr[, len])  dis(cpu[, addr[, n]])  step(cpu[, n])
  trace(cpu[, n])  breakpoint(cpu[, addr])  breakpoints(cpu)
  delete(cpu[, addr or id])  cont(cpu[, { timeout_ms = N }])
  cont{ cpu0, cpu1, ... }  runs every VCPU (guest:run) to the first stop
  t = travel(g, cpu, "run.mvlog"[, every])   t:to(K)  t:position()   (a recorded run, by exit;
      replay(...) is the same; `goto` is a Lua keyword, hence t:to)
Expressions print their value; Tab completes; Ctrl-C stops a running guest
and returns to the prompt; Ctrl-D leaves.]==]

-- The helpers as globals of env (the REPL's _G), with mv and help().
-- travel(g, cpu, log[, every]) (or replay): moonvisor.timetravel's session over a log.
function M.travel(g, cpu, path, every)
  return require("moonvisor.timetravel").open(g, cpu, path, { every = every })
end
M.replay = M.travel

function M.install(env)
  for _, name in ipairs { "regs", "x", "dis", "step", "trace", "breakpoint", "breakpoints", "delete", "cont", "travel", "replay" } do
    env[name] = M[name]
  end
  if env.mv == nil then env.mv = require "moonvisor" end
  if env.help == nil then env.help = function() return M.help end end
end

return M
