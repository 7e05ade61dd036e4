-- moonvisor.dev.vga: a view of the VGA text screen.  There is no VGA
-- device: 0xA0000-0xBFFFF is plain memory on this machine (so a kernel's
-- writes to the text buffer cost no exits), and this object reads the
-- 80x25 text page at 0xB8000 back out of it.
--
--   local vga = require("moonvisor.dev.vga").new(g)
--   vga:text() -> the screen as lines (trailing blanks trimmed, empty lines
--                 at the end dropped)
--   vga:cell(row, col) -> char, attribute       (0-based)
local M = {}
local Vga = {}
Vga.__index = Vga
M.Vga = Vga
M.TEXT_BASE, M.COLS, M.ROWS = 0xB8000, 80, 25

function M.new(g) return setmetatable({ g = g }, Vga) end

function Vga:cell(row, col)
  local c, a = self.g:read(M.TEXT_BASE + 2 * (row * M.COLS + col), 2):byte(1, 2)
  return string.char(c), a
end

function Vga:text()
  local raw = self.g:read(M.TEXT_BASE, 2 * M.COLS * M.ROWS)
  local lines = {}
  for r = 0, M.ROWS - 1 do
    local chars = {}
    for c = 0, M.COLS - 1 do
      local b = raw:byte(2 * (r * M.COLS + c) + 1)
      chars[#chars + 1] = (b >= 32 and b < 127) and string.char(b) or " "
    end
    lines[#lines + 1] = table.concat(chars):gsub("%s+$", "")
  end
  while #lines > 0 and lines[#lines] == "" do lines[#lines] = nil end
  return lines
end

function Vga:stats() return { base = M.TEXT_BASE } end
function Vga:remove() end

return M
