-- moonvisor.dev.misc: the small PC ports a kernel touches early: the POST
-- code port 0x80 and a PCI configuration mechanism #1 with no devices behind
-- it (0xCF8 address, 0xCF9 reset control, 0xCFC-0xCFF data).
--
--   local misc = require("moonvisor.dev.misc").new(g, {
--     post = true, pci = true,      -- false leaves that part out
--     on_post = function(code, cpu) end,      -- each byte written to 0x80
--     max_post = 256,               -- how many recent codes post_codes() keeps
--     on_reset = function(cause, cpu) end,    -- 0xCF9 written with bit 2
--                                   -- (reset CPU) set: cause "0xcf9"
--   })
--   misc:last_post() misc:post_codes() misc:pci_address()
--   misc:read(port[, size]) misc:write(port, value[, size])
--   misc:stats() misc:remove()
--
-- Model:
-- * 0x80: writes are recorded (count, the last max_post codes in order);
--   reads return the last code (0 before any).  Wider accesses are recorded
--   by their low byte.
-- * 0xCF8: a 32-bit access reads and writes the address register (bits 0-1
--   read as 0).  Narrower accesses at 0xCF8, 0xCFA, 0xCFB read all-ones and
--   are ignored, as on the i440FX.
-- * 0xCF9 (byte): the reset control register; reads back bits 1-3 of the
--   last write.  A write with bit 2 set calls on_reset.
-- * 0xCFC-0xCFF: no device answers: reads are all-ones of the access size,
--   writes are ignored (both counted).
local M = {}
local Misc = {}
Misc.__index = Misc
M.Misc = Misc

local function ones(size) return (1 << (8 * size)) - 1 end

function M.new(g, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("misc.new: options must be a table, got " .. type(opts), 2) end
  local self = setmetatable({
    on_post = opts.on_post, on_reset = opts.on_reset, max_post = opts.max_post or 256,
    posts = {}, post_head = 0, n_post = 0, last = nil,
    address = 0, rcr = 0, resets = 0,
    n_cfg_reads = 0, n_cfg_writes = 0,
    traps = {},
  }, Misc)
  local handler = function(e, cpu)
    if e.write then self:write(e.port, e.data, e.size, cpu) return end
    return self:read(e.port, e.size)
  end
  self.handler = handler
  if opts.post ~= false then self.traps[#self.traps + 1] = g:trap("io", 0x80, 1, handler) end
  if opts.pci ~= false then
    self.traps[#self.traps + 1] = g:trap("io", 0xcf8, 4, handler)
    self.traps[#self.traps + 1] = g:trap("io", 0xcfc, 4, handler)
  end
  return self
end

function Misc:read(port, size)
  size = size or 1
  if port == 0x80 then return (self.last or 0) | (size > 1 and (ones(size) & ~0xff) or 0) end
  if port == 0xcf8 and size == 4 then return self.address end
  if port == 0xcf9 and size == 1 then return self.rcr end
  if port >= 0xcfc and port <= 0xcff then self.n_cfg_reads = self.n_cfg_reads + 1 end
  return ones(size)
end

function Misc:write(port, v, size, cpu)
  size = size or 1
  if port == 0x80 then
    v = v & 0xff
    self.n_post = self.n_post + 1
    self.last = v
    self.post_head = self.post_head % self.max_post + 1
    self.posts[self.post_head] = v
    if self.on_post then self.on_post(v, cpu) end
  elseif port == 0xcf8 and size == 4 then
    self.address = v & 0xfffffffc
  elseif port == 0xcf9 and size == 1 then
    self.rcr = v & 0x0e
    if v & 0x04 ~= 0 then
      self.resets = self.resets + 1
      if self.on_reset then self.on_reset("0xcf9", cpu) end
    end
  elseif port >= 0xcfc and port <= 0xcff then
    self.n_cfg_writes = self.n_cfg_writes + 1
  end
end

-- The last POST code written, or nil.
function Misc:last_post() return self.last end

-- The recorded POST codes, oldest first (at most max_post of them).
function Misc:post_codes()
  local n = math.min(self.n_post, self.max_post)
  local list = {}
  local start = self.n_post > self.max_post and self.post_head or 0
  for i = 1, n do list[i] = self.posts[(start + i - 1) % self.max_post + 1] end
  return list
end

function Misc:pci_address() return self.address end

function Misc:stats()
  return { posts = self.n_post, last_post = self.last, pci_address = self.address,
           config_reads = self.n_cfg_reads, config_writes = self.n_cfg_writes, resets = self.resets }
end

function Misc:remove()
  for _, t in ipairs(self.traps) do t:remove() end
  self.traps = {}
end

return M
