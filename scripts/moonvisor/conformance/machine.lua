-- conformance/machine.lua - one backend's side of the differential tester:
-- a guest with 4 MiB of RAM and a VCPU in mode "user" (CPL3), built once;
-- each run writes the code, the data window, the registers and the x87/SSE
-- state of a case (everything a case can change: it stores only inside the
-- window), runs to the first exit no handler takes (bounded by a timeout)
-- and reads back everything compared:
--
--   { exit = { type, vector, error_code, rip, addr, size, write, data, port },
--     regs = cpu:read_state(), fpu = cpu:fpu(), mem = the data window,
--     cr2 (page faults), closing = true when the run ended in the epilogue's syscall }
--
-- The epilogue stores rcx, r11 and rflags before its syscall, so those
-- are compared as the instructions left them whatever the syscall does
-- (the save slots and the stack slot its pushfq used are blanked);
-- what the syscall itself reports is checked once per run (conformance.harness).
--
-- No snapshot is restored between runs, on purpose: on the nested test VM
-- (KVM inside QEMU TCG) a nested page fault in the middle of an
-- instruction resumes it with corrupted lazy flags (setcc m8 after or gets
-- ZF wrong), and restoring a snapshot write-protects the pages it tracks,
-- so the first store of a run to each page would fault that way.  Instead
-- a warm-up when the machine opens stores to the page a case uses and
-- takes one exception (kernel stack, IDT), and the pages stay writable.
-- (opts.restore = true restores a snapshot taken before the warm-up before
-- every run, for a backend that keeps state across runs it should not.)
local mv = require "moonvisor"
local state = require "moonvisor.conformance.state"
local asm = require "moonvisor.conformance.asm"

local machine = {}
local Machine = {}
Machine.__index = Machine

machine.TIMEOUT_MS = 30000   -- generous: a loaded host slows the nested VM a lot, and no case loops
machine.EPILOGUE = "mov [r15 + 0x700], rcx\nmov [r15 + 0x708], r11\npushfq\npop qword [r15 + 0x710]\nsyscall"
assert(state.SAVE == state.R15 + 0x700 and state.WINDOW_SIZE == 0x1000)
machine.WARM_UP = "mov rax, [r15]\nmov [r15], rax\npush rax\npop rax\nsyscall\nud2"
machine.WARM_AT = state.CODE + 0x8000

-- opts: timeout_ms, restore (default false)
function machine.new(backend, opts)
  opts = opts or {}
  local self = setmetatable({ backend = backend, timeout_ms = opts.timeout_ms or machine.TIMEOUT_MS }, Machine)
  self.restore = opts.restore == true
  self:open()
  return self
end

function Machine:open()
  local g = mv.guest{ backend = self.backend }
  g:map(0, mv.vmo(state.RAM))
  self.g = g
  self.cpu = g:vcpu{ entry = state.CODE, mode = "user", stack = state.STACK }
  if self.restore then self.base = g:snapshot() end   -- before the warm-up's exception
  g:write(machine.WARM_AT, asm.bytes(machine.WARM_UP))
  self.cpu:write_state{ rip = machine.WARM_AT, r15 = state.R15, rsp = state.STACK }
  for _, want in ipairs { "syscall", "exception" } do
    local e = self.cpu:run{ timeout_ms = self.timeout_ms }
    if e.type ~= want then
      error(("conformance.machine: %s: the warm-up ended in a %s exit, not %s"):format(self.backend, tostring(e.type), want))
    end
  end
end

function Machine:close()
  if self.g then pcall(self.g.close, self.g) end
  self.g, self.cpu, self.base = nil, nil, nil
end

-- After a failure the guest may be wedged: start over.
function Machine:reopen()
  self:close()
  self:open()
end

local EXIT_FIELDS = { "type", "vector", "error_code", "rip", "addr", "size", "write", "data", "port" }

-- Runs `code` (bytes, ending with the epilogue) from init; returns the
-- result table, or nil and a message for a tester failure (an API error,
-- a timeout, a backend error exit).
function Machine:run(code, init)
  local ok, res = pcall(function()
    local g, cpu = self.g, self.cpu
    if self.base then g:restore(self.base) end
    g:write(state.CODE, code)
    g:write(state.WINDOW, init.mem)
    local regs = {}
    for k, v in pairs(init.regs) do regs[k] = v end
    regs.rip = state.CODE
    cpu:write_state(regs)
    cpu:write_fpu(init.fpu)
    local e = cpu:run{ timeout_ms = self.timeout_ms }
    local exit = {}
    for _, k in ipairs(EXIT_FIELDS) do exit[k] = e[k] end
    local out = { exit = exit, regs = cpu:read_state(), fpu = cpu:fpu(), mem = g:read(state.WINDOW, state.WINDOW_SIZE) }
    if exit.type == "exception" and exit.vector == 14 then out.cr2 = cpu:sregs().cr2 end
    return out
  end)
  if not ok then return nil, "API error: " .. tostring(res) end
  local t = res.exit.type
  if t == "timeout" or t == "kick" then return nil, ("hang: no exit within %d ms"):format(self.timeout_ms) end
  if t == "internal_error" or t == "fail_entry" or t == "unknown" or t == "shutdown" then
    return nil, ("backend error: %s exit (rip %s)"):format(t, res.exit.rip and ("0x%x"):format(res.exit.rip) or "?")
  end
  if t == "syscall" then machine.unsave(res) end
  return res
end

-- The epilogue's syscall ended the run: rcx, r11 and rflags come from its
-- save slots (which are then blanked in the window); the registers as the
-- syscall left them stay in res.syscall for the harness check.
function machine.unsave(res)
  local at = state.SAVE - state.WINDOW
  local rcx, r11, rflags = string.unpack("<i8i8i8", res.mem, at + 1)
  res.syscall = { rip = res.exit.rip, rcx = res.regs.rcx, r11 = res.regs.r11, rflags = res.regs.rflags,
                  saved_rflags = rflags }
  res.regs.rcx, res.regs.r11, res.regs.rflags = rcx, r11, rflags
  res.mem = res.mem:sub(1, at) .. string.rep("\0", 24) .. res.mem:sub(at + 25)
  -- pushfq left rflags in the stack slot below rsp, undefined flags and all
  local slot = res.regs.rsp - 8 - state.WINDOW
  if slot >= 0 and slot + 8 <= #res.mem then res.mem = res.mem:sub(1, slot) .. string.rep("\0", 8) .. res.mem:sub(slot + 9) end
  res.closing = true
end

-- The bytes of a sequence of assembled instances followed by the epilogue,
-- and the offset of each instance (for turning an exit rip into an index).
function machine.code(seq)
  local parts, offsets, at = {}, {}, 0
  for i, inst in ipairs(seq) do
    offsets[i] = at
    parts[i] = assert(inst.bytes, "conformance.machine.code: instance not assembled")
    at = at + #inst.bytes
  end
  offsets[#seq + 1] = at
  parts[#parts + 1] = asm.bytes(machine.EPILOGUE)
  return table.concat(parts), offsets
end

return machine
