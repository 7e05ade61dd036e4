-- moonvisor.afl: AFL++ drives a moonvisor harness.  Under afl-fuzz
--
--   afl-fuzz -i in -o out -- moonvisor harness.lua @@     (or no @@: stdin)
--
-- fuzz_cli.main sees AFL++'s environment (__AFL_SHM_ID) and hands the harness,
-- the same config moonvisor.fuzz takes (setup, input, done, oracle,
-- coverage, timeout_ms; afl = { map_size = N } optional), to afl.serve,
-- which speaks the forkserver protocol on fds 198 (from the fuzzer) and 199
-- (to it), as AFL++ 4.04c (Debian 12) expects it, without forking:
--
--   hello     FS_OPT_ENABLED | FS_OPT_MAPSIZE (the map size) | FS_OPT_SHDMEM_FUZZ
--             (offered when AFL++ set __AFL_SHM_FUZZ_ID; it answers the offer
--             with one word, then writes each test case into that segment)
--   each run  the fuzzer writes a word (was the last child killed); we answer
--             a pid, reset the guest to the start snapshot, run the input and
--             answer a wait status: 0, or the signal of a crash (afl.signal)
--
-- The pid is a stand-in child (core.afl.helper: a process that only waits).
-- AFL++ kills it when a run exceeds its -t; the guest meanwhile runs in
-- slices of timeout_ms and, between slices, moonvisor checks the stand-in:
-- once it is dead the run stops and the answer is "killed by SIGKILL", which
-- AFL++ files as a hang.  So a hang is AFL++'s verdict, taken at its -t, and
-- nothing is ever stuck: if the fuzzer goes away (fd 198 hangs up, fd 199
-- breaks) the server closes the guest and returns.
--
-- Coverage: a stop at each of the harness's blocks (coverage.blocks) the
-- first time a run reaches it.  On the soft backend these are once-
-- breakpoints (cpu:once_breakpoints: nothing in guest memory, re-armed per
-- run in O(1), so Unicorn re-translates nothing); elsewhere int3s in the
-- start snapshot, where a hit puts the original byte back and the next
-- reset's dirty-page restore re-arms it.  Edges as AFL does: block ids from
-- the address, map index id ~ prev, prev = id >> 1, over the blocks in the
-- order a run first reaches them, plus one pseudo-edge for the outcome
-- (done, or the finding's kind), so that outcomes differ in the map too.
--
-- What moonvisor has to say (start, errors, the end) goes to stderr, which
-- AFL++ discards unless AFL_DEBUG_CHILD=1, and to $__AFL_OUT_DIR/moonvisor.log
-- (MOONVISOR_AFL_LOG overrides the path).
local core = require "moonvisor.core"
local fuzz = require "moonvisor.fuzz"

local afl = {}
local A = core.afl

local CTL, ST = A.FORKSRV_FD, A.FORKSRV_FD + 1

-- AFL++'s forkserver option words (include/types.h of AFL++ 4.04c).
afl.FS_OPT_ENABLED = 0x80000001
afl.FS_OPT_MAPSIZE = 0x40000000
afl.FS_OPT_SHDMEM_FUZZ = 0x01000000
afl.FS_OPT_MAX_MAPSIZE = 1 << 23
afl.DEFAULT_MAP_SIZE = 1 << 16

afl.SIG = { SIGILL = 4, SIGTRAP = 5, SIGABRT = 6, SIGBUS = 7, SIGFPE = 8, SIGKILL = 9, SIGSEGV = 11 }
local SIG = afl.SIG

-- The signal a finding of moonvisor.fuzz is reported to AFL++ as: faults of
-- memory (unmapped accesses, #PF, #GP, #SS, a triple fault) SIGSEGV, #UD
-- SIGILL, #DE and the FPU's SIGFPE, #DB/#BP SIGTRAP, #AC SIGBUS, timeouts
-- SIGKILL (a hang), anything else (guest-reported failures, oracle kinds,
-- unexpected exits) SIGABRT.
function afl.signal(kind)
  local v = tonumber(kind:match("^exception%-(%d+)$"))
  if v then
    if v == 0 or v == 16 or v == 19 then return SIG.SIGFPE end
    if v == 6 then return SIG.SIGILL end
    if v == 1 or v == 3 then return SIG.SIGTRAP end
    if v == 17 then return SIG.SIGBUS end
    return SIG.SIGSEGV
  end
  if kind == "mem-read" or kind == "mem-write" or kind == "shutdown" then return SIG.SIGSEGV end
  if kind == "timeout" then return SIG.SIGKILL end
  return SIG.SIGABRT
end

-- The hello word for a map of `map_size` bytes, with or without the offer of
-- test cases in shared memory.
function afl.hello(map_size, shmem)
  local w = afl.FS_OPT_ENABLED | afl.FS_OPT_MAPSIZE | ((map_size - 1) << 1)
  if shmem then w = w | afl.FS_OPT_SHDMEM_FUZZ end
  return w
end

-- The map size: the harness's afl.map_size, MOONVISOR_AFL_MAP_SIZE over it;
-- a power of two from 64 to 8 MiB (what the hello word can carry).
function afl.map_size(cfg)
  local v = os.getenv("MOONVISOR_AFL_MAP_SIZE")
  local from = "MOONVISOR_AFL_MAP_SIZE"
  if not v or v == "" then v, from = cfg.afl and cfg.afl.map_size, "afl.map_size" end
  if v == nil then return afl.DEFAULT_MAP_SIZE end
  local n = math.tointeger(tonumber(v))
  if not n or n < 64 or n > afl.FS_OPT_MAX_MAPSIZE or n & (n - 1) ~= 0 then
    error(("afl: %s %s is not a power of two from 64 to %d"):format(from, tostring(v), afl.FS_OPT_MAX_MAPSIZE), 0)
  end
  return n
end

-- A block's id in a map of mask + 1 bytes (a multiplicative hash of its address).
function afl.block_id(addr, mask)
  return ((addr * 0x9e3779b97f4a7c15) >> 32) & mask
end

-- True when this process was started by AFL++ (or one of its tools).
function afl.detected()
  local id = os.getenv(A.SHM_ENV)
  return id ~= nil and id ~= ""
end

-- {======================================================= the log

local Log = {}
Log.__index = Log

local function open_log()
  local path = os.getenv("MOONVISOR_AFL_LOG")
  if not path or path == "" then
    local dir = os.getenv("__AFL_OUT_DIR")
    path = dir and dir ~= "" and dir .. "/moonvisor.log" or nil
  end
  return setmetatable({ path = path, file = path and io.open(path, "a") or nil }, Log)
end

function Log:write(fmt, ...)
  local line = ("moonvisor afl[%s]: " .. fmt):format(A.getpid(), ...)
  io.stderr:write(line, "\n")
  if self.file then
    self.file:write(os.date("%Y-%m-%d %H:%M:%S "), line, "\n")
    self.file:flush()
  end
end

function Log:close()
  if self.file then self.file:close() end
  self.file = nil
end

-- {======================================================= the server

local Server = {}
Server.__index = Server

-- Where each test case comes from: AFL++'s shared memory, the @@ file, or
-- stdin (a file AFL++ rewrites and seeks back to 0 before each run).
function Server:input_source()
  if self.tc then
    local tc = self.tc
    return function() return (tc:input()) end, "shared memory"
  end
  local path = self.file
  if path then
    return function()
      local fh, err = io.open(path, "rb")
      if not fh then error("afl: the test case " .. tostring(err), 0) end
      local d = fh:read("a") or ""
      fh:close()
      return d
    end, "file " .. path
  end
  return function()
    io.stdin:seek("set", 0)
    return io.stdin:read("a") or ""
  end, "stdin"
end

function Server:ensure_helper()
  local h = self.helper
  if h and h:wait(0) ~= "killed" then return h end
  if h then
    h:close()
    self.kills = self.kills + 1
  end
  self.helper = A.helper()
  return self.helper
end

-- One run of `data` with coverage into the map.  Returns the wait status for
-- AFL++ (nil: the fuzzer hung up meanwhile) and the finding's kind.
function Server:run(data)
  local f, map, mask, ids, bp, once = self.f, self.map, self.mask, self.ids, self.f.breakpoints, self.once
  local g, cpu = f.g, f.cpu
  data = f:place(data)
  if once then cpu:arm_breakpoints() end
  local prev, exit = 0, nil
  local slice = f.timeout_ms
  while true do
    exit = cpu:run{ timeout_ms = slice }
    local t = exit.type
    if t == "debug" and exit.exception == 3 and ids[exit.rip] and (once or g:u8(exit.rip) == 0xcc) then
      local a = exit.rip
      if not once then g:u8(a, bp[a]) end   -- and on: RIP is at the int3; the next reset re-arms it
      local id = ids[a]
      map:hit((id ~ prev) & mask)
      prev = id >> 1
    elseif t == "timeout" and self.helper then
      local w = self.helper:wait(0, CTL)
      if w == "killed" then   -- AFL++'s -t ran out: a hang
        self.hangs = self.hangs + 1
        map:hit((afl.block_id(0x68616e67, mask) ~ prev) & mask)
        return SIG.SIGKILL, "timeout"
      elseif w == "hangup" then
        return nil
      end   -- AFL++'s -t is not up yet: run on
    elseif t == "timeout" and not self.forkserver then
      -- one run: a hanging target runs until the fuzzer kills it, unless
      -- the fuzzer is gone (this process was handed to another parent)
      if A.getppid() ~= self.ppid then return nil end
    else
      break
    end
  end
  local kind = f:classify(exit, data)
  map:hit((afl.block_id(kind and self:kind_id(kind) or 0x646f6e65, mask) ~ prev) & mask)
  if not kind then return 0 end
  if kind == "timeout" then self.hangs = self.hangs + 1 else self.crashes = self.crashes + 1 end
  return afl.signal(kind), kind
end

function Server:kind_id(kind)
  local h = 0
  for i = 1, #kind do h = (h * 31 + kind:byte(i)) & 0xffffffff end
  return h
end

-- The protocol: hello (and the shared-memory answer), then a run per request.
-- Returns why it ended: "closed" (the fuzzer went), "hangup".
function Server:serve()
  if not A.send(ST, afl.hello(self.map_size, self.tc ~= nil)) then return "closed" end
  if self.tc then
    local reply, why = A.recv(CTL, 60000)
    if not reply then
      if why == "closed" then return "closed" end
      error("afl: no answer from the fuzzer to the offer of test cases in shared memory (" .. why .. ")", 0)
    end
    if reply & afl.FS_OPT_SHDMEM_FUZZ == 0 then
      error(("afl: the fuzzer answered the shared-memory offer with 0x%08x"):format(reply), 0)
    end
  end
  local read_input = self.read_input
  while true do
    local _, why = A.recv(CTL)
    if why then return why end
    local h = self:ensure_helper()
    if not A.send(ST, h:pid()) then return "closed" end
    local data = read_input()
    self.last_input = data
    local status = self:run(data)
    self.runs = self.runs + 1
    if not status then return "hangup" end
    if not A.send(ST, status) then return "closed" end
  end
end

function Server:cleanup()
  if self.helper then self.helper:close() end
  if self.map then self.map:close() end
  if self.tc then self.tc:close() end
  if self.f and self.f.g then pcall(self.f.g.close, self.f.g) end
  if self.forkserver then
    A.close(CTL)
    A.close(ST)
  end
  self.helper, self.map, self.tc = nil, nil, nil
end

-- The harness as an AFL++ target.  `opts.file`: the test-case file (@@), nil
-- for stdin.  Returns { afl = true, runs, crashes, hangs, reason } once the
-- fuzzer is gone; without the forkserver's fds (AFL_NO_FORKSRV, a hand-made
-- run) it runs one test case and, when that is a finding, ends the process
-- with the finding's signal, as a crashing target would.
function afl.serve(cfg, opts)
  opts = opts or {}
  local log = open_log()
  local srv = setmetatable({ file = opts.file, runs = 0, crashes = 0, hangs = 0, kills = 0, log = log,
                             ppid = A.getppid() }, Server)
  local ok, err = xpcall(function()
    srv.map_size = afl.map_size(cfg)
    if os.getenv("AFL_DUMP_MAP_SIZE") then
      io.stdout:write(srv.map_size, "\n")
      srv.dumped = true
      return
    end
    local shm_id = os.getenv(A.SHM_ENV)
    if not shm_id or shm_id == "" then error("afl: " .. A.SHM_ENV .. " is not set: not started by AFL++", 0) end
    srv.forkserver = A.isfd(CTL) and A.isfd(ST)
    local c = {}
    for k, v in pairs(cfg) do c[k] = v end
    c.quiet, c.status = true, false
    if not c.coverage then log:write("the harness has no coverage (coverage = { blocks = ... }): AFL++ sees outcomes only") end
    local blocks = fuzz.blocks(c.coverage)
    c.coverage = nil
    srv.f = fuzz.new(c)
    if #blocks > 0 then   -- once-breakpoints where the backend has them, int3s elsewhere
      local f = srv.f
      srv.once = pcall(f.cpu.once_breakpoints, f.cpu, blocks)
      if srv.once then
        f.nblocks = #blocks
      else
        f:install_breakpoints(blocks)
        f.start:close()
        f.start = f.g:snapshot()
      end
    end
    srv.blocks = blocks
    srv.map = A.attach(shm_id, "afl: " .. A.SHM_ENV)
    if srv.map:size() < srv.map_size then
      -- AFL++ grows its map to what the hello asks for (or says why it cannot);
      -- until then, or under a fuzzer that does not read the hello, fold the
      -- edges into the map it gave
      log:write("AFL++'s map is %d bytes, the harness's %d: asking for %d", srv.map:size(), srv.map_size, srv.map_size)
      local fold = 1
      while fold * 2 <= srv.map:size() do fold = fold * 2 end
      srv.mask = fold - 1
    else
      srv.mask = srv.map_size - 1
    end
    local fuzz_id = os.getenv(A.SHM_FUZZ_ENV)
    if srv.forkserver and fuzz_id and fuzz_id ~= "" and os.getenv("MOONVISOR_AFL_SHMEM") ~= "0" then
      srv.tc = A.attach(fuzz_id, "afl: " .. A.SHM_FUZZ_ENV)
    end
    srv.ids = {}
    for _, a in ipairs(srv.blocks) do srv.ids[a] = afl.block_id(a, srv.mask) end
    local how
    srv.read_input, how = srv:input_source()
    log:write("serving %s on the %s backend: map %d bytes, %d blocks (%s), test cases from %s%s",
      arg and arg[0] or "harness", srv.f.g:backend(), srv.map_size, srv.f.nblocks,
      srv.once and "once-breakpoints" or "int3", how,
      srv.forkserver and "" or " (no forkserver: one run)")
    if srv.forkserver then
      srv.reason = srv:serve()
    else
      srv.helper = nil
      srv.status, srv.kind = srv:run(srv.read_input())
      srv.runs = 1
      srv.reason = "one run"
    end
  end, function(e) return tostring(e) end)
  if not ok then
    if srv.last_input and os.getenv("__AFL_OUT_DIR") then
      local path = os.getenv("__AFL_OUT_DIR") .. "/moonvisor-error-input"
      local fh = io.open(path, "wb")
      if fh then
        fh:write(srv.last_input)
        fh:close()
        err = err .. " (the input: " .. path .. ")"
      end
    end
    log:write("stopped: %s", err)
  elseif not srv.dumped then
    log:write("done after %d runs (%d crashes, %d hangs): %s%s", srv.runs, srv.crashes, srv.hangs, srv.reason,
      srv.kind and " (" .. srv.kind .. ")" or "")
  end
  srv:cleanup()
  log:close()
  if not ok then error(err, 0) end
  if srv.status and srv.status ~= 0 then A.raise(srv.status) end
  return { afl = true, runs = srv.runs, crashes = srv.crashes, hangs = srv.hangs, reason = srv.reason,
           kind = srv.kind }
end

return afl
