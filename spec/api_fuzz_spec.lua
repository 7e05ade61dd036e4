-- api_fuzz_spec.lua - random sequences of API calls with random arguments on
-- random objects (closed ones too), collectgarbage() at random points and
-- handlers that throw or give a trap another handler.  The process must survive, every error must be a
-- string naming a call, and every fd must be released at the end.
-- MOONVISOR_API_FUZZ_STEPS sets the number of calls (default 3000) and
-- MOONVISOR_API_FUZZ_SEED the seed.
local mv = require "moonvisor"
local H = require "helpers"

local STEPS = tonumber(os.getenv("MOONVISOR_API_FUZZ_STEPS")) or 3000
local SEED = tonumber(os.getenv("MOONVISOR_API_FUZZ_SEED")) or 20261125

-- A small deterministic PRNG (xorshift64*), independent of math.random.
local function prng(seed)
  local s = seed ~= 0 and seed or 1
  return function(n)
    s = s ~ (s << 13); s = s ~ (s >> 7); s = s ~ (s << 17)
    return n and (s % n + n) % n + 1 or s
  end
end

describe("the API under random calls", function()
  it(("survives %d random calls (seed %d) and releases every fd"):format(STEPS, SEED), function()
    local rnd = prng(SEED)
    local fds_before = H.fd_count()
    local code = H.asm([[
      l: in al, 0x60
      out 0x61, al
      mov bx, [0x2000]
      mov [0x9000], bx
      cmp al, 7
      jne l
      hlt]])
    local values = { 0, 1, -1, 0x1000, 0xfff, 0x10000, 0x3f8, 1 << 40, math.maxinteger, math.mininteger,
                     1.5, 2.0, "x", "4096", true, {}, function() end, nil }
    local objects = { guests = {}, vmos = {}, cpus = {}, traps = {}, snaps = {} }
    local function pick(list) return #list > 0 and list[rnd(#list)] or nil end
    local function value() return values[rnd(#values)] end
    local function any_object()
      local kinds = { "guests", "vmos", "cpus", "traps", "snaps" }
      return pick(objects[kinds[rnd(#kinds)]])
    end
    local handlers = {
      function() end,
      function() return rnd(256) - 1 end,
      function() error("handler says no") end,
      function() return "not a number" end,
      function(_, c) c:kick() end,
      function() local t = pick(objects.traps); if t then t:handler(handlers[rnd(#handlers)]) end end,   -- hands a trap over mid-run
    }
    local actions = {
      function() objects.vmos[#objects.vmos + 1] = mv.vmo(0x1000 * rnd(32)) end,
      function()
        local g = H.guest()
        objects.guests[#objects.guests + 1] = g
        local ram = mv.vmo(0x10000)
        g:map(0, ram)
        g:write(0x1000, code)
        objects.cpus[#objects.cpus + 1] = g:vcpu{ entry = 0x1000 }
      end,
      function() local g = pick(objects.guests); if g then g:map(value(), pick(objects.vmos) or value(), rnd(2) == 1 and { readonly = value() } or nil) end end,
      function() local g = pick(objects.guests); if g then g:unmap(value()) end end,
      function() local g = pick(objects.guests); if g then g:read(value(), value()) end end,
      function() local g = pick(objects.guests); if g then g:write(value(), value()) end end,
      function() local g = pick(objects.guests); if g then g:u32(value(), rnd(2) == 1 and value() or nil) end end,
      function()
        local g = pick(objects.guests)
        if g then
          local kinds = { "io", "mem", "bell", value() }
          objects.traps[#objects.traps + 1] = g:trap(kinds[rnd(#kinds)], rnd(3) == 1 and value() or 0x60 + rnd(4) - 1,
                                                     rnd(3) == 1 and value() or 1, handlers[rnd(#handlers)])
        end
      end,
      function() local t = pick(objects.traps); if t then t:remove() end end,
      function()
        local t = pick(objects.traps)
        if t then
          if rnd(2) == 1 then t:handler(rnd(2) == 1 and handlers[rnd(#handlers)] or value()) else t:handler() end
        end
      end,
      function() local c = pick(objects.cpus); if c then c:run{ timeout_ms = 5 } end end,
      function() local c = pick(objects.cpus); if c then c:write_state{ rip = value() } end end,
      function() local c = pick(objects.cpus); if c then c.rax = value() end end,
      function() local c = pick(objects.cpus); if c then c:write_sregs{ ds = { selector = value() } } end end,
      function() local c = pick(objects.cpus); if c then c:interrupt(value()) end end,
      function() local c = pick(objects.cpus); if c then c:kick() end end,
      function() local g = pick(objects.guests); if g then objects.snaps[#objects.snaps + 1] = g:snapshot() end end,
      function() local g = pick(objects.guests); if g then g:restore(pick(objects.snaps) or value()) end end,
      function() local o = any_object(); if o then o:close() end end,
      function() local g = pick(objects.guests); if g then g:close() end end,
      function() local o = any_object(); if o then tostring(o) end end,
      function() -- a method of one type called on an object of another
        local o, m = any_object(), ({ "map", "enter", "read", "remove", "save", "u8" })[rnd(6)]
        local owner = pick(objects.guests) or pick(objects.cpus)
        if o and owner and owner[m] then owner[m](o, value(), value()) end
      end,
      function() collectgarbage() end,
      function() -- drop references so the collector finalizes live objects
        local kinds = { "guests", "vmos", "cpus", "traps", "snaps" }
        local list = objects[kinds[rnd(#kinds)]]
        if #list > 0 then table.remove(list, rnd(#list)) end
      end,
    }
    local errors, calls = 0, 0
    for _ = 1, STEPS do
      local ok, err = pcall(actions[rnd(#actions)])
      calls = calls + 1
      if not ok then
        errors = errors + 1
        assert.is_string(err)
        assert.matches("[%w_.:]+", err)
      end
    end
    for _, list in pairs(objects) do
      for _, o in ipairs(list) do pcall(o.close, o) end
    end
    objects = nil
    collectgarbage(); collectgarbage()
    assert.equals(fds_before, H.fd_count())
    print(("\n  api fuzz: %d calls, %d raised errors, seed %d"):format(calls, errors, SEED))
  end)
end)
