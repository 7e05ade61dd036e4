-- moonvisor.sync: one fuzzer instance's directory in an AFL++ sync
-- directory, so that native moonvisor workers and afl-fuzz instances (-M/-S)
-- share their corpora.  The layout is AFL++'s:
--
--   SYNC/NAME/queue/id:000000,src:moonvisor,...   inputs that reached new
--                                  blocks, numbered from 0 without gaps (AFL++
--                                  imports from the first id it has not seen)
--   SYNC/NAME/.synced/OTHER        the next id to import from OTHER (a u32,
--                                  as AFL++ keeps it)
--   SYNC/NAME/fuzzer_stats         "key : value" lines, enough for afl-whatsup
--
--   local sync = require "moonvisor.sync"
--   local s = sync.open("sync", "mv-1")
--   s:resume(max_len)           -- what our queue holds (a restarted instance)
--   s:export(data, "+cov")      -- queue/id:NNNNNN,... (written, then renamed)
--   for _, e in ipairs(s:pull(max_len)) do ... e.data, e.from, e.id end
--   s.ignored, s.last_ignored   -- garbage seen: files that are no instance
--                               -- directory, queue entries that are no
--                               -- id:NNNNNN file or are empty or too big
--   s:stats{ execs_done = ..., ... }
--
-- Entries are renamed into place, so an importer never reads half a file;
-- dot files (AFL++'s queue/.state/) are no garbage, they are skipped.
local files = require "moonvisor.files"
local sync = {}

local Sync = {}
Sync.__index = Sync

sync.MAX_FILE = 1024 * 1024   -- AFL++'s MAX_FILE: bigger entries are not imported

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Entries of a directory: { name, type ("f", "d", other), size }, sorted by name.
local function entries(dir)
  local p = io.popen(("find %s -mindepth 1 -maxdepth 1 -printf '%%Y %%s %%f\\n' 2>/dev/null"):format(q(dir)))
  local list = {}
  for line in p:lines() do
    local ty, size, name = line:match("^(%S+) (%d+) (.*)$")
    if ty then list[#list + 1] = { name = name, type = ty, size = tonumber(size) } end
  end
  p:close()
  table.sort(list, function(a, b) return a.name < b.name end)
  return list
end
sync.entries = entries

local read_file = files.read
local function write_file(path, data) files.write(path, data, "sync") end

-- An instance name AFL++ would take: no slash, no leading dot or dash.
function sync.check_name(name)
  if type(name) ~= "string" or name == "" or name:find("[/%s]") or name:find("^[.-]") then
    error(("sync: instance name %s is not a plain file name"):format(tostring(name)), 0)
  end
  return name
end

-- Opens (creates) SYNC/NAME.  Resumes its numbering and what it imported.
function sync.open(dir, name)
  sync.check_name(name)
  local self = setmetatable({ dir = dir, name = name, home = dir .. "/" .. name, seen = {},
                              ignored = 0, last_ignored = 0, imported = 0, exported = 0 }, Sync)
  os.execute(("mkdir -p %s %s"):format(q(self.home .. "/queue"), q(self.home .. "/.synced")))
  local next_id = 0
  for _, e in ipairs(entries(self.home .. "/queue")) do
    local id = tonumber(e.name:match("^id:(%d%d%d%d%d%d)"))
    if id and id >= next_id then next_id = id + 1 end
  end
  self.next_id = next_id
  for _, e in ipairs(entries(self.home .. "/.synced")) do
    local d = e.type == "f" and not e.name:find("%.last$") and read_file(self.home .. "/.synced/" .. e.name)
    if d and #d == 4 then self.seen[e.name] = string.unpack("<I4", d) end
  end
  return self
end

-- What our own queue holds already (a resumed instance starts from it).
function Sync:resume(max_len)
  local got = {}
  for _, e in ipairs(entries(self.home .. "/queue")) do
    if e.type == "f" and e.name:find("^id:%d%d%d%d%d%d") and e.size > 0 and e.size <= sync.MAX_FILE then
      local d = read_file(self.home .. "/queue/" .. e.name)
      if d and #d > 0 then got[#got + 1] = max_len and d:sub(1, max_len) or d end
    end
  end
  return got
end

-- Puts `data` into our queue as the next id; `what` goes into the name
-- (AFL++ style: src:, op:, +cov).  Returns the path.
function Sync:export(data, what)
  local base = ("id:%06d,src:moonvisor,op:%s"):format(self.next_id, what or "mutate")
  local tmp = ("%s/queue/.%s.tmp"):format(self.home, base)
  write_file(tmp, data)
  local path = self.home .. "/queue/" .. base
  local ok, err = os.rename(tmp, path)
  if not ok then error("sync: " .. tostring(err), 0) end
  self.next_id = self.next_id + 1
  self.exported = self.exported + 1
  return path
end

-- New queue entries of every other instance since the last pull: a list of
-- { data, from, id }.  Counts garbage in self.ignored (self.last_ignored for
-- this pull) instead of failing on it.
function Sync:pull(max_len)
  max_len = math.min(max_len or sync.MAX_FILE, sync.MAX_FILE)
  local got, ignored = {}, 0
  for _, inst in ipairs(entries(self.dir)) do
    if inst.name:sub(1, 1) == "." or inst.name == self.name then   -- ours, or hidden (logs, seeds)
    elseif inst.type ~= "d" then
      ignored = ignored + 1   -- a stray file where instance directories go
    else
      local qdir = self.dir .. "/" .. inst.name .. "/queue"
      local first = self.seen[inst.name] or 0
      local next_id = first
      for _, e in ipairs(entries(qdir)) do
        local id = tonumber(e.name:match("^id:(%d%d%d%d%d%d)"))
        if e.name:sub(1, 1) == "." then   -- AFL++'s queue/.state, our renames in progress
        elseif not id or e.type ~= "f" then
          ignored = ignored + 1
        elseif id >= first then
          if e.size == 0 or e.size > sync.MAX_FILE then
            ignored = ignored + 1
          else
            local d = read_file(qdir .. "/" .. e.name)
            if d and #d > 0 then
              got[#got + 1] = { data = #d > max_len and d:sub(1, max_len) or d, from = inst.name, id = id }
            else
              ignored = ignored + 1
            end
          end
          if id + 1 > next_id then next_id = id + 1 end
        end
      end
      if next_id ~= first then
        self.seen[inst.name] = next_id
        write_file(self.home .. "/.synced/" .. inst.name, string.pack("<I4", next_id))
      end
    end
  end
  self.ignored = self.ignored + ignored
  self.last_ignored = ignored
  self.imported = self.imported + #got
  return got
end

-- fuzzer_stats for afl-whatsup and people: `t` holds the numbers; the
-- instance's identity and times are filled in.  afl-whatsup reads every
-- field it shows, so the native driver gives them all (AFL++'s queue
-- notions it has not: 0).
function Sync:stats(t)
  local now = os.time()
  self.start_time = self.start_time or now
  local lines = {
    ("start_time        : %d"):format(self.start_time),
    ("last_update       : %d"):format(now),
    ("run_time          : %d"):format(now - self.start_time),
    ("fuzzer_pid        : %d"):format(require("moonvisor.core").afl.getpid()),
  }
  for _, k in ipairs{ "cycles_done", "cycles_wo_finds", "cur_item", "execs_done", "execs_per_sec", "corpus_count",
                      "corpus_imported", "pending_favs", "pending_total", "bitmap_cvg", "saved_crashes", "saved_hangs",
                      "last_find", "last_crash", "last_hang", "blocks_covered", "blocks_total", "sync_ignored" } do
    if t[k] then lines[#lines + 1] = ("%-17s : %s"):format(k, t[k]) end
  end
  lines[#lines + 1] = "afl_banner        : moonvisor " .. self.name
  lines[#lines + 1] = "target_mode       : moonvisor native driver"
  local tmp = self.home .. "/.fuzzer_stats.tmp"
  write_file(tmp, table.concat(lines, "\n") .. "\n")
  os.rename(tmp, self.home .. "/fuzzer_stats")
end

return sync
