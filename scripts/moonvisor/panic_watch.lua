-- moonvisor.panic_watch: notices a Linux kernel panic in what the guest
-- prints on its console, so that a run ends with the panic's text instead
-- of spinning for ever in the kernel's panic loop.
--
--   local w = require("moonvisor.panic_watch").new{ on_line = function(w) end }
--   uart.tap = w.tap       -- every byte the guest sends (w:byte(b) does the same)
--   on_line(w)     -- (optional) after each whole line once the panic line was seen
--   w.panic        -- nil, or the panic line: "Kernel panic - not syncing: ..."
--   w.ended        -- true once "---[ end Kernel panic" was printed too
--   w.since        -- mv.clock() when the panic line was complete
--
-- Linux prints "Kernel panic - not syncing: MSG" first, then (usually) a
-- stack dump, then "---[ end Kernel panic - not syncing: MSG ]---" and loops
-- (or, with panic=N, reboots before that last line).  moonvisor.pc ends the
-- machine at the end line, at a reset or triple fault after the panic line,
-- or PANIC_GRACE seconds after it, whichever comes first.  Only whole lines
-- are looked at, at most MAX_LINE bytes of each: a guest that floods the
-- console costs a bounded buffer.
local mv = require "moonvisor"

local char, unpack = string.char, table.unpack

local M = {}
local Watch = {}
Watch.__index = Watch
M.PANIC_GRACE = 1.0
M.MAX_LINE = 512

function M.new(opts)
  local on_line = opts and opts.on_line
  local self = setmetatable({ buf = {} }, Watch)
  local buf, n, max = self.buf, 0, M.MAX_LINE
  -- The tap: a closure over the line so far (kept as byte values: a string
  -- per byte would cost more), so that a byte is one call.
  self.tap = function(b)
    if b == 10 then
      self:_line(char(unpack(buf, 1, n)))
      n = 0
      if on_line and self.panic then on_line(self) end
    elseif n < max then
      n = n + 1
      buf[n] = b
    end
  end
  return self
end

function Watch:_line(line)
  line = line:gsub("\r", "")
  if not self.panic then
    local msg = line:match("(Kernel panic %- not syncing:.*)$")
    if msg then
      self.panic = msg
      self.since = mv.clock()
    end
  elseif line:find("---[ end Kernel panic", 1, true) then
    self.ended = true
  end
end

function Watch:byte(b) self.tap(b) end

-- True when the machine should end now.
function Watch:due()
  return self.panic ~= nil and (self.ended or mv.clock() - self.since >= M.PANIC_GRACE)
end

return M
