-- moonvisor.replay: the command line's --record FILE, --replay FILE and
-- --verify.  The first cpu:enter() of the run (cpu:run(), a machine's run,
-- any enter loop) starts recording or replaying its guest, so the log's
-- header holds the guest as the script set it up (memory, registers); when
-- the script is done, finish() ends the log and prints the state hash.
-- The wrapper around cpu:enter exists only until that first enter, as the
-- --gdb one does.  g:record / g:replay (bindings/lrecord.c) are the calls
-- a script uses itself.
local core = require "moonvisor.core"

local replay = {}

local pending   -- { mode = "record" | "replay", path, verify }
local active    -- the moonvisor.Record of the run, once started

-- Arms the hook: opts.record or opts.replay (a path), opts.verify (read
-- at the first enter, so --verify may come after --replay).
function replay.arm(opts)
  if opts.record and opts.replay then error("moonvisor: --record and --replay exclude each other", 0) end
  pending = { mode = opts.record and "record" or "replay", path = opts.record or opts.replay, opts = opts }
  local Vcpu = core.Vcpu
  local raw_enter = Vcpu.enter
  local function enter(cpu, o)
    if Vcpu.enter == enter then Vcpu.enter = raw_enter end
    local p = pending
    pending = nil
    if p then
      local g = cpu:guest()
      local ok, r
      if p.mode == "record" then ok, r = pcall(g.record, g, p.path)
      else ok, r = pcall(g.replay, g, p.path, { verify = p.opts.verify }) end
      if not ok then error((tostring(r):gsub("^[^\n]-:%d+: ", "", 1)), 0) end   -- the message names the call and file
      active = r
    end
    return raw_enter(cpu, o)
  end
  Vcpu.enter = enter
end

-- The Record the command line started (nil before the first enter).
function replay.active() return active end

-- Ends the log (or checks the replay's end) and says so on out (stderr).
function replay.finish(out)
  out = out or io.stderr
  if pending then
    local p = pending
    pending = nil
    out:write(("moonvisor: --%s %s: no guest ran, nothing %s\n"):format(p.mode, p.path,
      p.mode == "record" and "recorded" or "replayed"))
    return
  end
  if not active then return end
  local rec = active
  active = nil
  local s = rec:close()   -- raises the divergence, if any
  if s.mode == "record" then
    out:write(("moonvisor: recorded %s: %d exits, %d bytes, state hash 0x%016x\n"):format(s.path, s.exits, s.bytes,
      s.state_hash))
  else
    out:write(("moonvisor: replayed %s: %d exits as recorded%s, state hash 0x%016x matches\n"):format(s.path, s.exits,
      s.inexact > 0 and (" (%d kicks or timeouts not at their recorded instruction)"):format(s.inexact) or "",
      s.state_hash))
  end
end

-- {======================================================= fuzz findings

-- Runs one fuzz input (f a moonvisor.fuzz Fuzzer made without coverage, so
-- guest memory holds no breakpoints) from the start snapshot under a
-- recorder (mode "record") or a replayer ("replay", "verify") of path.
-- The start state is restored before the log begins, so its header is the
-- start state every run of the fuzzer shares.  Returns the outcome (as
-- f:exec) and the log's summary; a divergence is raised.
function replay.fuzz_run(f, data, mode, path)
  f:reset()
  local g = f.g
  local rec = mode == "record" and g:record(path) or g:replay(path, { verify = mode == "verify" })
  local ok, out = pcall(f.exec, f, data)
  local ok2, s = pcall(rec.close, rec)
  if not ok then error(out, 0) end
  if not ok2 then error(s, 0) end
  return out, s
end

-- The exit trace of a log: one line per exit ("exit 3: vcpu 0 io write
-- port 0x501 size 1 rip 0x1019 data 0x5a"), given to emit (print).
function replay.trace(path, emit)
  emit = emit or print
  for index, text in core.log_records(path) do
    if index then emit(("exit %d: %s"):format(index, text)) end
  end
end

-- fuzz --repro FILE --record LOG | --replay LOG [--verify]: the finding's
-- input run once under the log; its exit trace, outcome and the log's state
-- hash said through f.log (the same lines on every replay: a replay checks
-- each exit against the log before the trace is printed).
function replay.fuzz_repro(f, input, mode, path)
  local file = io.open(input, "rb")
  if not file then error(("fuzz: --repro %s: cannot open the input"):format(input), 0) end
  local data = file:read("a")
  file:close()
  local out, s = replay.fuzz_run(f, data, mode, path)
  replay.trace(path, f.log)
  local what = out.key and ("%s at rip=0x%x"):format(out.kind, out.rip) or "no finding"
  if mode == "record" then
    f.log(("recorded %s: %s, %d exits, %d bytes, state hash 0x%016x"):format(path, what, s.exits, s.bytes, s.state_hash))
  else
    f.log(("replayed %s: %s, %d exits as recorded, state hash 0x%016x matches"):format(path, what, s.exits,
      s.state_hash))
  end
  return out, s
end

return replay
