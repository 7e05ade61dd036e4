-- tmux.lua - programs driven in a real terminal for the specs: a detached
-- tmux session on a private server, keys in, the screen out.
local H = require "helpers"

local M = {}
local count = 0

local sh = H.sh
M.sh = sh

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
M.q = q

local function monotonic()
  local p = io.popen("date +%s.%N")
  local t = tonumber(p:read("a"))
  p:close()
  return t
end

local Session = {}
Session.__index = Session
M.Session = Session

-- Starts cmd (a shell command line) in a new session of 200x50 in the
-- current directory, and waits for `ready` on its screen when given.
function M.start(cmd, ready)
  count = count + 1
  local s = setmetatable({ sock = ("mvtest-%d-%d"):format(H.pid(), count) }, Session)
  sh(("tmux -L %s new-session -d -x 200 -y 50 -c %s %s"):format(s.sock, q(os.getenv("PWD") or "."), q(cmd)))
  if ready then s:wait(ready) end
  return s
end

function Session:keys(...)   -- key names: Enter, Tab, C-c, Up ...
  sh(("tmux -L %s send-keys %s"):format(self.sock, table.concat({ ... }, " ")))
end

function Session:type(text) sh(("tmux -L %s send-keys -l %s"):format(self.sock, q(text))) end

function Session:line(text)
  self:type(text)
  self:keys("Enter")
end

function Session:screen() return (sh(("tmux -L %s capture-pane -p"):format(self.sock))) end

-- Polls the screen until it holds text (plain; capture-pane drops
-- trailing spaces) after the text "after", for up to `seconds` (5).
function Session:wait(text, after, seconds)
  local deadline = monotonic() + (seconds or 5)
  repeat
    local screen = self:screen()
    local at = screen:find(text, after and (screen:find(after, 1, true) or #screen) or 1, true)
    if at then return screen end
    sh("sleep 0.05")
  until monotonic() > deadline
  error(("no %q on the screen:\n%s"):format(text, self:screen()), 2)
end

function Session:kill() sh(("tmux -L %s kill-server"):format(self.sock)) end

return M
