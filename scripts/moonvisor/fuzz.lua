-- moonvisor.fuzz: a snapshot fuzz driver in Lua.
--
--   local fuzz = require "moonvisor.fuzz"
--   local f = fuzz.new{
--     setup   = function() ... return g, cpu end,   -- the guest, stopped where each run starts
--     snapshot = "start.snap",                      -- optional: restore this file over setup's guest
--     input   = { addr = 0x105000, max_len = 4096, len_reg = "rsi" },   -- bytes into memory
--     done    = function(exit, cpu) return exit.type == "syscall" and cpu.rax == 60 end,   -- mode = "user"
--     oracle  = { fail_port = 0x502, timeout = true, check = function(exit, cpu, data) end },
--     coverage = { blocks = "build/guests/fuzz_target.blocks" },   -- or a list of addresses
--     seed = 1, iterations = 100000, seconds = 60, timeout_ms = 50,
--     corpus = "corpus/" or { "seed input", ... }, findings = "findings/",
--   }
--   local summary = f:run()            -- fuzz within the budget
--   local outcome = f:exec(bytes)      -- one input: { kind, rip, key, exit, ... } (kind nil: no finding)
--   f:minimize(bytes, key)             -- smallest input found that still gives `key`
--   require("moonvisor.fuzz_cli").main(config, arg)   -- a fuzz script's command line (moonvisor.fuzz_cli)
--
-- SMP targets: setup may return more VCPUs (g, cpu0, cpu1, ...); each run is
-- then g:run{ cpu0, cpu1, ... } and with schedule = { quanta = { 10, 100,
-- 1000 } } the first byte of every input picks the quantum (the rest is the
-- input): mutating it mutates the interleaving, and on the soft backend,
-- whose scheduler is deterministic, a finding replays from its bytes alone.
-- The exit that ends the run is the VCPU's that ended it ("halted": a hlt
-- exit; "stop": g:stop() from a handler, a "stop" exit).
--
-- Each run: restore the start snapshot (dirty pages only), put the input in
-- guest memory (and/or behind fuzz.input_port / fuzz.input_mmio traps), set
-- the length register, cpu:run{ timeout_ms }.  The run's last exit decides:
-- `done` says the input was handled normally; otherwise it is a finding, by
-- kind: "exception-<vector>", "shutdown" (triple fault), "timeout",
-- "mem-read"/"mem-write" (an access to an unmapped address), "guest-failure"
-- (an OUT to oracle.fail_port), "io-in"/"io-out", "hlt", "syscall" (one
-- `done` does not accept), or whatever oracle.check returns (a CPL3 target
-- in mode = "user" reports its own failures through a system call number
-- that oracle.check names).  Findings are de-duplicated by kind and RIP.
--
-- Coverage (snapchange style): an int3 on every basic-block start, put in
-- guest memory before the start snapshot is taken.  A hit puts the original
-- byte back and runs on (RIP stays at the int3, so the instruction runs);
-- an input that hit a new block joins the corpus.  The start snapshot still
-- holds the 0xCC of every removed breakpoint, so after the iteration that
-- removed some, the driver restores, patches the removed bytes out and takes
-- a fresh start snapshot (a full copy of guest memory, but only when coverage
-- grew, which is rare); every other iteration is a dirty-page restore alone.
-- Re-patching after every restore would instead dirty the code pages each
-- time and copy them back on every restore.
local mv = require "moonvisor"
local files = require "moonvisor.files"

local fuzz = {}

local function hex(n) return ("0x%x"):format(n) end

-- {======================================================= PRNG

-- splitmix64: seeds (one per iteration) from a base seed.
function fuzz.splitmix(x)
  x = x + 0x9e3779b97f4a7c15
  local z = x
  z = (z ~ (z >> 30)) * 0xbf58476d1ce4e5b9
  z = (z ~ (z >> 27)) * 0x94d049bb133111eb
  return z ~ (z >> 31)
end

local Rng = {}
Rng.__index = Rng

-- xorshift64* seeded through splitmix64 (so seed 0 works).
function fuzz.rng(seed)
  local s = fuzz.splitmix(seed)
  if s == 0 then s = 0x2545f4914f6cdd1d end
  return setmetatable({ s = s }, Rng)
end

-- The generator's step: the next 64-bit output.  A local function, so the
-- draws below (a mutation makes a few dozen) call it without a method lookup.
local function step(self)
  local x = self.s
  x = x ~ (x >> 12)
  x = x ~ (x << 25)
  x = x ~ (x >> 27)
  self.s = x
  return x * 0x2545f4914f6cdd1d
end
Rng.next = step

-- An integer in 0 .. n-1.
function Rng:below(n)
  return ((step(self) >> 1) % n)
end

function Rng:byte() return (step(self) >> 56) & 0xff end
function Rng:chance(n) return self:below(n) == 0 end

-- {======================================================= mutators

fuzz.INTERESTING = {
  [1] = { 0, 1, 0x7f, 0x80, 0xff, 0x10, 0x20, 0x40, 0x64 },
  [2] = { 0, 1, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x3ff, 0x400, 0x1000 },
  [4] = { 0, 1, 0x7f, 0x80, 0xff, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffffffff },
  [8] = { 0, 1, 0x7fffffff, 0x80000000, 0xffffffff, 0x100000000, math.maxinteger, math.mininteger, -1 },
}

local function put(data, pos, bytes)   -- pos is 1-based; bytes replace
  return data:sub(1, pos - 1) .. bytes .. data:sub(pos + #bytes)
end

local function random_bytes(rng, n)
  local t = {}
  for i = 1, n do t[i] = rng:byte() end
  return string.char(table.unpack(t))
end

-- Each mutator: function(rng, data, ctx) -> new data (ctx.corpus: a list of
-- inputs to splice from, ctx.max_len).  All are deterministic in rng.
fuzz.mutators = {}
local M = fuzz.mutators

function M.bitflip(rng, data)
  if #data == 0 then return data end
  local pos = rng:below(#data) + 1
  return put(data, pos, string.char(data:byte(pos) ~ (1 << rng:below(8))))
end

function M.byte_set(rng, data)
  if #data == 0 then return data end
  return put(data, rng:below(#data) + 1, string.char(rng:byte()))
end

function M.arith(rng, data)
  if #data == 0 then return data end
  local pos = rng:below(#data) + 1
  local d = rng:below(35) - 17
  return put(data, pos, string.char((data:byte(pos) + d) & 0xff))
end

-- A boundary integer of 1, 2, 4 or 8 bytes, little- or big-endian.
function M.interesting(rng, data)
  local sizes = {}
  for _, s in ipairs{ 1, 2, 4, 8 } do if s <= #data then sizes[#sizes + 1] = s end end
  if #sizes == 0 then return data end
  local size = sizes[rng:below(#sizes) + 1]
  local list = fuzz.INTERESTING[size]
  local v = list[rng:below(#list) + 1]
  local bytes = size < 8 and string.pack("<I" .. size, v & ((1 << (8 * size)) - 1)) or string.pack("<i8", v)
  if rng:chance(2) then bytes = bytes:reverse() end
  return put(data, rng:below(#data - size + 1) + 1, bytes)
end

function M.insert(rng, data, ctx)
  local room = (ctx and ctx.max_len or 4096) - #data
  if room <= 0 then return data end
  local n = math.min(room, rng:below(16) + 1)
  local pos = rng:below(#data + 1) + 1
  local bytes = rng:chance(2) and random_bytes(rng, n) or string.rep(string.char(rng:byte()), n)
  return data:sub(1, pos - 1) .. bytes .. data:sub(pos)
end

function M.delete(rng, data)
  if #data <= 1 then return data end
  local pos = rng:below(#data) + 1
  local n = math.min(#data - pos + 1, rng:below(16) + 1)
  return data:sub(1, pos - 1) .. data:sub(pos + n)
end

-- Copies a block of the input over another place in it.
function M.clone(rng, data)
  if #data < 2 then return data end
  local from = rng:below(#data) + 1
  local n = rng:below(math.min(32, #data - from + 1)) + 1
  return put(data, rng:below(#data - n + 1) + 1, data:sub(from, from + n - 1))
end

-- Head of this input, tail of another corpus entry (or a block of it inserted).
function M.splice(rng, data, ctx)
  local corpus = ctx and ctx.corpus
  if not corpus or #corpus == 0 then return M.byte_set(rng, data) end
  local other = corpus[rng:below(#corpus) + 1]
  if #other == 0 then return data end
  if rng:chance(2) then
    local cut = rng:below(#data + 1)
    return data:sub(1, cut) .. other:sub(rng:below(#other) + 1)
  end
  local from = rng:below(#other) + 1
  local n = rng:below(math.min(32, #other - from + 1)) + 1
  local pos = rng:below(#data + 1) + 1
  return data:sub(1, pos - 1) .. other:sub(from, from + n - 1) .. data:sub(pos)
end

fuzz.MUTATOR_ORDER = { "bitflip", "byte_set", "arith", "interesting", "insert", "delete", "clone", "splice" }

-- 1, 2, 4 or 8 stacked mutations (havoc); returns the input and the names
-- of the mutators used.
function fuzz.mutate(rng, data, ctx)
  local n = 1 << rng:below(4)
  local names = {}
  for i = 1, n do
    local name = fuzz.MUTATOR_ORDER[rng:below(#fuzz.MUTATOR_ORDER) + 1]
    data = M[name](rng, data, ctx)
    names[i] = name
  end
  local max = ctx and ctx.max_len
  if max and #data > max then data = data:sub(1, max) end
  return data, names
end

-- {======================================================= inputs behind traps

-- The input of the run in progress, for input_port / input_mmio traps.
local stream = { data = "", pos = 1 }

local function take(n)
  local d = stream.data
  if stream.pos > #d then return nil end   -- exhausted: all-ones, an empty bus
  local v = 0
  for i = 0, n - 1 do v = v | ((d:byte(stream.pos + i) or 0) << (8 * i)) end
  stream.pos = stream.pos + n
  return v
end

-- IN from `port` returns the next bytes of the current input (as many as
-- the access is wide, little-endian); all-ones once it is used up.
function fuzz.input_port(g, port, size)
  return g:trap("io", port, size or 1, function(exit) if not exit.write then return take(exit.size) end end)
end

-- The same for MMIO reads of [addr, addr + size).
function fuzz.input_mmio(g, addr, size)
  return g:trap("mem", addr, size or 0x1000, function(exit) if not exit.write then return take(exit.size) end end)
end

-- {======================================================= files, clock, blocks

local function read_file(path)
  local d, err = files.read(path)
  if not d then error("fuzz: " .. tostring(err), 0) end
  return d
end

local function write_file(path, data) files.write(path, data, "fuzz") end

local function mkdir(path) os.execute(("mkdir -p '%s'"):format(path:gsub("'", "'\\''"))) end

local function list_dir(path)
  local p = io.popen(("ls -1 '%s' 2>/dev/null"):format(path:gsub("'", "'\\''")))
  local names = {}
  for line in p:lines() do names[#names + 1] = line end
  p:close()
  table.sort(names)
  return names
end

-- Wall-clock seconds (10 ms resolution from /proc/uptime; CPU time without it).
function fuzz.now()
  local f = io.open("/proc/uptime", "r")
  if f then
    local t = f:read("n")
    f:close()
    if t then return t end
  end
  return os.clock()
end

-- Basic-block starts: a file of hex addresses, one a line ("#" comments).
function fuzz.read_blocks(path)
  local list = {}
  for line in read_file(path):gmatch("[^\n]+") do
    local a = line:match("^%s*0x(%x+)") or line:match("^%s*(%x+)%s*$")
    if a then list[#list + 1] = tonumber(a, 16) end
  end
  return list
end

local function fnv(data)   -- FNV-1a, for file names of corpus entries
  local h = 0xcbf29ce484222325
  for i = 1, #data do h = (h ~ data:byte(i)) * 0x100000001b3 end
  return h
end

-- {======================================================= the driver

local Fuzzer = {}
Fuzzer.__index = Fuzzer

local function default_log(s) io.stdout:write(s, "\n") io.stdout:flush() end

function fuzz.new(cfg)
  assert(type(cfg) == "table", "fuzz.new: config must be a table")
  assert(type(cfg.setup) == "function", "fuzz.new: setup must be a function returning g, cpu")
  local self = setmetatable({ cfg = cfg }, Fuzzer)
  local made = table.pack(cfg.setup())   -- first: it may fill in cfg.input from the image's symbols
  self.g, self.cpu = made[1], made[2]
  assert(self.g and self.cpu, "fuzz.new: setup must return g, cpu")
  self.cpus = { table.unpack(made, 2, made.n) }   -- SMP: more than one
  self.quanta = cfg.schedule and cfg.schedule.quanta
  assert(not self.quanta or (#self.quanta > 0 and #self.quanta <= 256),
         "fuzz.new: schedule.quanta must list 1 to 256 quanta")
  self.seed = cfg.seed or 1
  self.input = cfg.input or {}
  self.max_len = self.input.max_len or 4096
  self.timeout_ms = cfg.timeout_ms or 100
  self.oracle = cfg.oracle or {}
  self.done = cfg.done or function(exit) return exit.type == "hlt" end
  self.log = cfg.log or (cfg.quiet and function() end or default_log)
  if cfg.snapshot then
    local s = type(cfg.snapshot) == "string" and mv.load_snapshot(cfg.snapshot) or cfg.snapshot
    self.g:restore(s)
  end
  -- coverage: breakpoints go in before the start snapshot
  self.breakpoints, self.nblocks, self.covered = {}, 0, 0
  if cfg.coverage then self:install_breakpoints(fuzz.blocks(cfg.coverage)) end
  self.removed = {}      -- breakpoints removed since the start snapshot was taken
  self.start = self.g:snapshot()
  -- the corpus: seeds from a directory or a list
  self.corpus = {}
  local seeds = cfg.corpus
  if type(seeds) == "string" then
    for _, name in ipairs(list_dir(seeds)) do self.corpus[#self.corpus + 1] = read_file(seeds .. "/" .. name) end
  elseif type(seeds) == "table" then
    for _, d in ipairs(seeds) do self.corpus[#self.corpus + 1] = d end
  end
  if #self.corpus == 0 then self.corpus[1] = ("\0"):rep(math.min(16, self.max_len)) end
  self.nseeds = #self.corpus
  self.findings, self.unique = {}, {}
  if cfg.sync then   -- an instance of an AFL++ sync directory (moonvisor.sync)
    self.sync = require("moonvisor.sync").open(cfg.sync.dir, cfg.sync.name)
    self.sync_interval = cfg.sync.interval or 5
  end
  self.iterations, self.execs = 0, 0
  return self
end

-- The block list of a coverage config: coverage.blocks, a file name or a list.
function fuzz.blocks(coverage)
  local blocks = coverage and coverage.blocks
  if type(blocks) == "string" then blocks = fuzz.read_blocks(blocks) end
  return blocks or {}
end

-- An int3 on each block start (the original bytes in self.breakpoints) and
-- int3 debug exits on; the caller takes the start snapshot afterwards.
function Fuzzer:install_breakpoints(blocks)
  local g = self.g
  for _, a in ipairs(blocks) do
    if not self.breakpoints[a] then
      local ok, orig = pcall(g.u8, g, a)
      if ok and orig ~= 0xcc then
        self.breakpoints[a] = orig
        g:u8(a, 0xcc)
        self.nblocks = self.nblocks + 1
      end
    end
  end
  for _, c in ipairs(self.cpus) do c:debug{ breakpoints = true } end
end

-- The kind of finding an exit is, and its RIP (nil: the input ended normally).
function Fuzzer:classify(exit, data, cpu)
  local o = self.oracle
  cpu = cpu or self.cpu
  local kind, rip
  local t = exit.type
  if self.done(exit, cpu) then
    kind = nil
  elseif t == "timeout" then
    if o.timeout ~= false then kind = "timeout" end
  elseif t == "exception" then
    kind, rip = "exception-" .. exit.vector, exit.rip
  elseif t == "io" then
    if o.fail_port and exit.port == o.fail_port and exit.write then kind = "guest-failure"
    else kind = exit.write and "io-out" or "io-in" end
  elseif t == "mem" then
    kind = exit.write and "mem-write" or "mem-read"
  else
    kind, rip = t, exit.rip   -- shutdown (triple fault), hlt, debug, internal_error, ...
  end
  if o.check then
    local k = o.check(exit, cpu, data)
    if k then kind = k end
  end
  if not kind then return nil end
  rip = rip or cpu.rip
  return kind, rip
end

-- The start state again: a dirty-page restore, plus a fresh start snapshot
-- when breakpoints were removed since it was taken (see the top of the file).
function Fuzzer:reset()
  local g = self.g
  g:restore(self.start)
  if #self.removed > 0 then
    for _, a in ipairs(self.removed) do g:u8(a, self.breakpoints[a]) end
    self.removed = {}
    self.start:close()
    self.start = g:snapshot()
    self.snapshots = (self.snapshots or 0) + 1
  end
end

-- The start state with `data` as the input: reset, the bytes into guest
-- memory and/or behind the input traps, the length register.  Returns the
-- input as placed (cut to max_len).
function Fuzzer:place(data)
  local g, cpu, inp = self.g, self.cpu, self.input
  self:reset()
  if #data > self.max_len then data = data:sub(1, self.max_len) end
  if inp.addr then
    g:write(inp.addr, data)
    if inp.len_reg then cpu[inp.len_reg] = #data end
    if inp.addr_reg then cpu[inp.addr_reg] = inp.addr end
  end
  stream.data, stream.pos = data, 1
  self.execs = self.execs + 1
  return data
end

-- Runs one input from the start snapshot.  Returns an outcome: { kind, rip,
-- key (nil when the input was handled normally), exit (a copy), new_blocks }.
-- One turn of the guest: cpu:run, or g:run for an SMP target (its result
-- as the exit that ended it, and the VCPU that made it).
function Fuzzer:turn(quantum)
  if #self.cpus == 1 then return self.cpu:run{ timeout_ms = self.timeout_ms }, self.cpu end
  local res = self.g:run(self.cpus, { timeout_ms = self.timeout_ms, quantum = quantum })
  if res.reason == "exit" then return res.exit, res.cpu end
  return { type = res.reason == "halted" and "hlt" or res.reason }, self.cpu
end

function Fuzzer:exec(data)
  local g, cpu = self.g, self.cpu
  local quantum, whole = nil, data
  if self.quanta then   -- the schedule byte
    quantum = self.quanta[(data:byte(1) or 0) % #self.quanta + 1]
    data = data:sub(2)
  end
  data = self:place(data)
  local new_blocks = 0
  local exit
  while true do
    exit, cpu = self:turn(quantum)
    if exit.type == "debug" and exit.exception == 3 and self.breakpoints[exit.rip]
       and g:u8(exit.rip) == 0xcc then
      g:u8(exit.rip, self.breakpoints[exit.rip])   -- and run on: RIP is at the int3
      self.removed[#self.removed + 1] = exit.rip
      self.covered = self.covered + 1
      new_blocks = new_blocks + 1
    else
      break
    end
  end
  local kind, rip = self:classify(exit, data, cpu)   -- (each run's exit is a table of its own)
  return { kind = kind, rip = rip, key = kind and (kind .. "@" .. hex(rip)) or nil, exit = exit,
           new_blocks = new_blocks, data = quantum and whole:sub(1, 1) .. data or data, quantum = quantum,
           cpu = cpu.id }
end

-- Shrinks `data` while it still gives the finding `key`: deletes chunks of
-- halving size, then tries each byte as 0.  At most `budget` runs.
function Fuzzer:minimize(data, key, budget)
  budget = budget or self.cfg.minimize_runs or 2000
  local runs = 0
  local function same(d)
    runs = runs + 1
    return self:exec(d).key == key
  end
  local best = data
  local chunk = #best // 2
  while chunk >= 1 and runs < budget do
    local i = 1
    while i <= #best and runs < budget do
      local cand = best:sub(1, i - 1) .. best:sub(i + chunk)
      if #cand < #best and same(cand) then best = cand else i = i + chunk end
    end
    chunk = chunk // 2
  end
  return best, runs
end

local function describe_exit(e)
  if e.type == "mem" then return ("mem %s at %s"):format(e.write and "write" or "read", hex(e.addr)) end
  if e.type == "io" then return ("io %s port %s"):format(e.write and "out" or "in", hex(e.port)) end
  if e.type == "exception" then return ("exception %d at %s"):format(e.vector, hex(e.rip)) end
  return e.type
end
fuzz.describe_exit = describe_exit

-- Records a finding (unless its key is known): minimises it, writes it to
-- the findings directory, logs it with the iteration's seed.
function Fuzzer:found(out, iter, iseed)
  if self.unique[out.key] then
    self.unique[out.key].count = self.unique[out.key].count + 1
    return nil
  end
  local data, original = out.data, #out.data
  if self.cfg.minimize ~= false then data = self:minimize(data, out.key) end
  local f = { key = out.key, kind = out.kind, rip = out.rip, seed = iseed, base_seed = self.seed,
              iteration = iter, data = data, original_size = original, exit = out.exit, count = 1,
              elapsed = fuzz.now() - (self.t0 or fuzz.now()), execs = self.execs }
  self.unique[out.key] = f
  self.findings[#self.findings + 1] = f
  local where = ""
  if self.cfg.findings then
    mkdir(self.cfg.findings)
    local base = ("%s/%s-%s"):format(self.cfg.findings, out.kind, hex(out.rip))
    write_file(base .. ".bin", data)
    write_file(base .. ".txt", ("kind %s\nrip %s\nexit %s\nseed %s (base seed %d, iteration %d)\nsize %d (minimised from %d)\n"
      .. "replay log: --repro %s.bin --record %s.mvlog, then --repro %s.bin --replay %s.mvlog\n")
      :format(out.kind, hex(out.rip), describe_exit(out.exit), hex(iseed), self.seed, iter, #data, original,
              base, base, base, base))
    f.path = base .. ".bin"
    where = " -> " .. f.path
  end
  self:clear_status()
  self.log(("finding: %s at rip=%s (%s) seed=%s iteration=%d size=%d (from %d)%s")
    :format(out.kind, hex(out.rip), describe_exit(out.exit), hex(iseed), iter, #data, original, where))
  return f
end

-- One exchange with the other instances of the sync directory: every input
-- they queued since the last one runs here; those that reach new blocks
-- join the corpus (not our queue: they are in theirs), findings are
-- recorded as ours.  Garbage in the directory is counted and said once.
function Fuzzer:sync_step(iter)
  local s = self.sync
  local got = s:pull(self.max_len)
  local kept = 0
  for _, e in ipairs(got) do
    local out = self:exec(e.data)
    if out.new_blocks > 0 then
      self.corpus[#self.corpus + 1] = out.data
      kept = kept + 1
    end
    if out.key then self:found(out, iter, 0) end
  end
  self.imported = (self.imported or 0) + kept
  if #got > 0 or s.last_ignored > 0 then
    self:clear_status()
    self.log(("sync: %d new inputs from the other instances, %d kept%s"):format(#got, kept,
      s.last_ignored > 0 and (", %d files ignored (not id:NNNNNN queue entries of an instance)"):format(s.last_ignored) or ""))
  end
  self:write_stats()
end

function Fuzzer:write_stats()
  if not self.sync then return end
  local el = fuzz.now() - (self.t0 or fuzz.now())
  local hangs = 0
  for _, f in ipairs(self.findings) do if f.kind == "timeout" then hangs = hangs + 1 end end
  local last = { crash = 0, hang = 0 }
  for _, f in ipairs(self.findings) do
    local k = f.kind == "timeout" and "hang" or "crash"
    last[k] = math.floor(self.wall0 + f.elapsed)
  end
  self.sync:stats{ execs_done = self.execs, execs_per_sec = ("%.2f"):format(self.execs / math.max(el, 1e-3)),
                   corpus_count = #self.corpus, corpus_imported = self.imported or 0,
                   saved_crashes = #self.findings - hangs, saved_hangs = hangs, cycles_done = 0, cycles_wo_finds = 0,
                   cur_item = 0, pending_favs = 0, pending_total = 0, last_find = self.last_find or 0,
                   last_crash = last.crash, last_hang = last.hang,
                   bitmap_cvg = ("%.2f%%"):format(100 * self.covered / math.max(self.nblocks, 1)),
                   blocks_covered = self.covered, blocks_total = self.nblocks, sync_ignored = self.sync.ignored }
end

function Fuzzer:status_text()
  local el = fuzz.now() - self.t0
  return ("[fuzz] %.1fs  %d iterations  %.0f exec/s  corpus %d  blocks %d/%d  findings %d")
    :format(el, self.iterations, self.execs / math.max(el, 1e-3), #self.corpus, self.covered, self.nblocks,
            #self.findings)
end

function Fuzzer:clear_status()
  if self.tty then io.stderr:write("\r\27[K") end
end

-- Fuzzes until the budget (cfg.iterations and/or cfg.seconds; default
-- 10000 iterations) is spent or cfg.stop_after findings were made.
-- Returns a summary { iterations, execs, elapsed, exec_per_s, corpus, covered, blocks, findings }.
function Fuzzer:run()
  local cfg = self.cfg
  local max_iter = cfg.iterations or (cfg.seconds and math.maxinteger or 10000)
  local max_s = cfg.seconds or math.huge
  if cfg.status == nil then self.tty = os.execute("test -t 2") == true else self.tty = cfg.status end
  self.t0, self.wall0 = fuzz.now(), os.time()
  local last_status = self.t0
  local ctx = { corpus = self.corpus, max_len = self.max_len }
  local last_sync = self.t0
  if self.sync then   -- start from what we queued before and what the others have
    for _, d in ipairs(self.sync:resume(self.max_len)) do
      local out = self:exec(d)
      if out.new_blocks > 0 then self.corpus[#self.corpus + 1] = out.data end
    end
    self:sync_step(0)
  end
  for iter = 1, max_iter do
    local iseed = fuzz.splitmix(self.seed * 0x100000001 + iter)
    local rng = fuzz.rng(iseed)
    -- half the time the newest corpus entry (it found something new), else any
    local parent = self.corpus[rng:chance(2) and #self.corpus or rng:below(#self.corpus) + 1]
    local data = fuzz.mutate(rng, parent, ctx)
    local out = self:exec(data)
    self.iterations = iter
    if out.new_blocks > 0 then
      self.corpus[#self.corpus + 1] = out.data
      if cfg.corpus_out then
        mkdir(cfg.corpus_out)
        write_file(("%s/cov-%016x"):format(cfg.corpus_out, fnv(out.data)), out.data)
      end
      if self.sync then
        self.sync:export(out.data, "+cov")
        self.last_find = os.time()
      end
    end
    if out.key then self:found(out, iter, iseed) end
    if cfg.stop_after and #self.findings >= cfg.stop_after then break end
    if iter % 16 == 0 then
      local t = fuzz.now()
      if t - self.t0 >= max_s then break end
      if self.sync and t - last_sync >= self.sync_interval then
        self:sync_step(iter)
        last_sync = t
      end
      if self.tty and t - last_status >= 0.25 then
        io.stderr:write("\r\27[K", self:status_text())
        last_status = t
      end
    end
  end
  self:clear_status()
  local el = fuzz.now() - self.t0
  local summary = { iterations = self.iterations, execs = self.execs, elapsed = el,
                    exec_per_s = self.execs / math.max(el, 1e-3), corpus = #self.corpus,
                    covered = self.covered, blocks = self.nblocks, findings = self.findings }
  self.log(("fuzz: %d iterations, %d execs in %.2f s (%.0f exec/s), corpus %d (%d seeds), blocks %d/%d, %d unique findings (seed %d)")
    :format(summary.iterations, summary.execs, el, summary.exec_per_s, summary.corpus, self.nseeds,
            self.covered, self.nblocks, #self.findings, self.seed))
  if self.sync then
    self:write_stats()
    summary.imported, summary.exported, summary.ignored = self.imported or 0, self.sync.exported, self.sync.ignored
    self.log(("sync: %s in %s: %d queued, %d imported, %d files ignored"):format(self.sync.name, self.sync.dir,
      self.sync.exported, summary.imported, self.sync.ignored))
  end
  return summary
end

-- Runs one input (bytes, or a file name) and reports what it does.
function Fuzzer:repro(input)
  local data = input
  if type(input) == "string" and #input < 4096 and io.open(input, "rb") then data = read_file(input) end
  local out = self:exec(data)
  if out.key then
    self.log(("reproduced: %s at rip=%s (%s), %d-byte input"):format(out.kind, hex(out.rip), describe_exit(out.exit), #data))
  else
    self.log(("no finding: the input ended normally (%s), %d-byte input"):format(describe_exit(out.exit), #data))
  end
  return out
end

return fuzz
