-- conformance/harness.lua - the two checks that concern no generated
-- instruction and run once per conformance run:
--
--   "syscall (closing)": the epilogue's syscall from a quiet state; its exit
--     rip and the rcx (next rip) and r11 (rflags) it leaves, on both machines
--   "vcpu reset": the x87/SSE state of a new mode-"user" VCPU (FCW, FSW,
--     abridged FTW, MXCSR) before anything writes it
--
-- Each returns a class like conformance.tester's (or nil when the two
-- agree), plus a failure message when a machine could not run.
local mv = require "moonvisor"
local machine = require "moonvisor.conformance.machine"
local state = require "moonvisor.conformance.state"

local harness = {}

local function hex(v) return v == nil and "nil" or ("0x%x"):format(v) end

function harness.syscall(ref, other)
  local code = machine.code({})
  local init = state.quiet()
  local want = state.CODE + #code
  local res = {}
  for i, m in ipairs { ref, other } do
    local r, err = m:run(code, init)
    if not r then return nil, m.backend .. ": " .. err end
    if not r.closing then
      return nil, ("%s: the closing syscall ended in a %s exit"):format(m.backend, tostring(r.exit.type))
    end
    res[i] = r.syscall
  end
  local items, details = {}, {}
  for _, k in ipairs { "rip", "rcx", "r11" } do
    local a, b = res[1][k], res[2][k]
    if a ~= b then
      items[#items + 1] = k == "rip" and "exit.rip" or k
      details[#details + 1] = ("%-12s %s vs %s (architectural: %s)"):format(k == "rip" and "exit.rip" or k, hex(a), hex(b),
        hex(k == "r11" and res[1].saved_rflags or want))
    end
  end
  if #items == 0 then return nil end
  local form = "syscall (closing)"
  return { key = form .. ": " .. table.concat(items, ","), form = form, items = items, details = details,
           prefix = 0, seq = {}, minimised = true, harness = "syscall" }
end

function harness.reset(ref_backend, other_backend)
  local fpus = {}
  for i, b in ipairs { ref_backend, other_backend } do
    local ok, f = pcall(function()
      local g <close> = mv.guest{ backend = b }
      g:map(0, mv.vmo(state.RAM))
      local cpu = g:vcpu{ entry = state.CODE, mode = "user", stack = state.STACK }
      return cpu:fpu()
    end)
    if not ok then return nil, b .. ": API error: " .. tostring(f) end
    fpus[i] = f
  end
  local items, details = {}, {}
  for _, k in ipairs { "fcw", "fsw", "ftw", "mxcsr" } do
    if fpus[1][k] ~= fpus[2][k] then
      items[#items + 1] = k
      details[#details + 1] = ("%-12s %s vs %s"):format(k, hex(fpus[1][k]), hex(fpus[2][k]))
    end
  end
  if #items == 0 then return nil end
  local form = "vcpu reset"
  return { key = form .. ": " .. table.concat(items, ","), form = form, items = items, details = details,
           prefix = 0, seq = {}, minimised = true, harness = "reset" }
end

return harness
