-- moonvisor.timetravel: a recorded session, run forward and back by exit
-- index.  The guest replays its log driven (g:replay{ drive = true }: no
-- script runs alongside, the replayer makes the script's recorded actions
-- too) and a snapshot is taken every `every` exits on the way, so that going
-- back to any exit restores the nearest snapshot at or before it and
-- re-executes at most `every` exits.  At any stop, regs/x/dis (moonvisor.repl)
-- show the guest as it was at that exit.
--
--   local tt = require("moonvisor.timetravel").open(g, cpu, "run.mvlog", { every = 100 })
--   tt:to(500)      -- run (or go back) to exit 500: the state just after exit 499
--   tt:to(12)       -- back: restore the snapshot of exit 0 and replay 12 exits
--   tt:position()   -- 12;  tt:last() -- the number of exits in the log, once reached
--   tt:close()
--
-- (Lua has `goto` as a keyword, hence `to`; the REPL's helper is `travel`.)
-- The guest must be set up as it was when the recording began (the log's
-- header is checked).  One VCPU: cpu is the one the log's exits run on.
local tt = {}

local Session = {}
Session.__index = Session

function tt.open(g, cpu, path, opts)
  opts = opts or {}
  local every = math.tointeger(opts.every or 100)
  if not every or every < 1 then error("timetravel.open: every must be a positive integer", 2) end
  local rp = g:replay(path, { drive = true })
  local self = setmetatable({ g = g, cpu = cpu, rp = rp, every = every, snaps = {}, pos = 0,
                              path = path, restores = 0, replayed = 0 }, Session)
  self:keep()
  return self
end

-- A snapshot of the guest and the log position at the current exit.
function Session:keep()
  local old = self.snaps[self.pos]
  if old then old.snap:close() end
  self.snaps[self.pos] = { snap = self.g:snapshot(), at = self.rp:tell() }
end

function Session:position() return self.pos end

-- The number of exits of the log, once known (nil until the end was reached).
function Session:last() return self.total end

-- Runs forward to exit k (or to the log's end, whichever comes first).
function Session:forward(k)
  while self.pos < k do
    if self.rp:at_end() then
      self.total = self.pos
      break
    end
    local target = math.min(k, (self.pos // self.every + 1) * self.every)
    self.rp:stop_at(target)
    local e = self.cpu:enter()
    local now = self.rp:summary().exits
    self.replayed = self.replayed + (now - self.pos)
    self.pos = now
    self.exit = e
    if now % self.every == 0 and not self.snaps[now] then self:keep() end
  end
  self.rp:stop_at(0)
  return self.pos
end

-- Goes to exit index k (0: the start): forward by replaying, back by
-- restoring the nearest snapshot at or before k and replaying from there.
function Session:to(k)
  k = math.tointeger(k)
  if not k or k < 0 then error("timetravel:to: the exit index must be a non-negative integer", 2) end
  if self.total and k > self.total then k = self.total end
  local best = 0   -- the nearest snapshot at or before k
  for at in pairs(self.snaps) do if at <= k and at > best then best = at end end
  if k < self.pos or best > self.pos then   -- back, or forward past a snapshot taken before
    local s = self.snaps[best]
    self.rp:pause(true)   -- the restore's register writes are not the log's
    local ok, err = pcall(self.g.restore, self.g, s.snap)
    self.rp:pause(false)
    if not ok then error(err, 0) end
    self.rp:seek(s.at)
    self.pos = best
    self.restores = self.restores + 1
  end
  return self:forward(k)
end

function Session:close()
  for _, s in pairs(self.snaps) do s.snap:close() end
  self.snaps = {}
  if self.rp then pcall(self.rp.close, self.rp) end   -- a session that stopped early does not end its log
  self.rp = nil
end
Session.__close = Session.close

function Session:__tostring()
  return ("TimeTravel(%s at exit %d%s, a snapshot every %d exits)"):format(self.path, self.pos,
    self.total and (" of %d"):format(self.total) or "", self.every)
end

return tt
