-- files.lua - whole-file reads and writes (moonvisor.files): the open, read
-- or write, close of the library's drivers (fuzz, AFL++ sync, campaigns,
-- the conformance tester) and the specs, in one place.
local files = {}

-- The contents of `path`, or nil and the reason when it cannot be read.
function files.read(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local data, rerr = f:read("a")
  f:close()
  if not data then return nil, path .. ": " .. tostring(rerr) end
  return data
end

-- Writes `data` to `path`, replacing it; a failure raises "<who>: <reason>".
function files.write(path, data, who)
  local f, err = io.open(path, "wb")
  if not f then error(who .. ": " .. tostring(err), 0) end
  local ok, werr = f:write(data)
  f:close()
  if not ok then error(who .. ": " .. path .. ": " .. tostring(werr), 0) end
end

return files
