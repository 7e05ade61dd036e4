-- stubs.lua - moonvisor's ring-0 exception stubs, shared by mode = "user"
-- and mode = "long": 32 interrupt gates to 16-byte stubs that report their
-- vector through port 0xEE, and the Lua half that turns that port exit back
-- into an exit the script reads,
--
--   { type = "exception", vector, error_code, rip }   (error_code where the CPU pushes one)
--
-- and returns the VCPU to the faulting instruction with the registers the
-- guest had (the frame the CPU pushed is unwound here, not by an iretq).
-- The soft backend reports exceptions itself and never runs the stubs.
--
--   stub v:  [push 0]  push v  jmp common
--   common:  push rax; mov eax, [rsp+8]; out 0xee, eax; pop rax; add rsp, 16; iretq
local stubs = {}

stubs.EXCEPTION_PORT = 0xee
stubs.SIZE = 32 * 16 + 14          -- the stubs and the common tail
stubs.HAS_ERROR_CODE = { [8] = true, [10] = true, [11] = true, [12] = true, [13] = true, [14] = true,
                         [17] = true, [21] = true, [29] = true, [30] = true }
local OUT_END = 7                  -- offset in the common tail of the byte after `out 0xee, eax`

-- The code of the stubs placed at base.
function stubs.code(base)
  local common = base + 32 * 16
  local parts = {}
  for v = 0, 31 do
    local code = (stubs.HAS_ERROR_CODE[v] and "" or "\x6a\x00") .. string.pack("<BB", 0x6a, v)
    local jmp_at = base + v * 16 + #code
    code = code .. "\xe9" .. string.pack("<i4", common - (jmp_at + 5))
    parts[#parts + 1] = code .. string.rep("\x90", 16 - #code)
  end
  parts[#parts + 1] = "\x50\x8b\x44\x24\x08\xe7\xee\x58\x48\x83\xc4\x10\x48\xcf"
  return table.concat(parts)
end

-- 16-byte interrupt gates to the stubs at base through code selector cs, on
-- interrupt stack ist (0: the current or the TSS's RSP0).  DPL 0, but for
-- vector 3: int3 from CPL3 reaches its stub as a breakpoint, not as a #GP.
function stubs.idt(base, cs, ist)
  local gates = {}
  for v = 0, 31 do
    local at = base + v * 16
    gates[#gates + 1] = string.pack("<I2I2I1I1I2I4I4", at & 0xffff, cs, ist or 0, v == 3 and 0xee or 0x8e,
                                    (at >> 16) & 0xffff, at >> 32, 0)
  end
  return table.concat(gates)
end

-- VCPUs whose vectors 0-31 lead to our stubs: cpu -> { report = rip after
-- the stubs' out, ring3 = the user segments to return to (mode "user") }.
stubs.cpus = setmetatable({}, { __mode = "k" })

function stubs.install(cpu, base, ring3)
  stubs.cpus[cpu] = { report = base + 32 * 16 + OUT_END, ring3 = ring3 }
  if ring3 then stubs.declare_sandbox(cpu, base) end
end

-- The page-table pages reachable from cr3 (4-level paging), as { gpa, size }.
local function table_pages(g, cr3, out)
  local function walk(table_gpa, level)
    out[#out + 1] = { table_gpa, 0x1000 }
    if level == 1 then return end
    local entries = g:read(table_gpa, 0x1000)
    for i = 0, 511 do
      local e = string.unpack("<I8", entries, i * 8 + 1)
      if e & 1 ~= 0 and (level == 4 or e & 0x80 == 0) then   -- present, and a table (not a large page)
        walk(e & 0x000ffffffffff000, level - 1)
      end
    end
  end
  walk(cr3 & 0x000ffffffffff000, 4)
  return out
end

-- A mode "user" VCPU is a sandbox (cpu:declare_sandbox, mv_vcpu_declare_sandbox):
-- from ring 3 it reaches ring 0 only through these stubs and the syscall
-- entry after them, which exit at once (the host does their return to ring
-- 3) and change no debug register, XCR0 or MSR, and the syscall entry's
-- exit follows no exception.  The ranges: GDT, IDT, TSS, page tables and
-- the stubs.  Where the backend knows that, a restore leaves the debug
-- registers and XCR0 alone after runs that kept to it.
function stubs.declare_sandbox(cpu, base)
  local g, s = cpu:guest(), cpu:sregs()
  local entry = cpu:msr(0xc0000082)   -- LSTAR: the syscall entry
  if entry < base or entry > base + 0x1000 or g:read(entry, 2) ~= "\xe6\xef" then return end   -- not ours
  local ranges = { { s.gdt.base, s.gdt.limit + 1 }, { s.idt.base, s.idt.limit + 1 },
                   { s.tr.base, s.tr.limit + 1 }, { base, entry + 2 - base } }
  local ok, tables = pcall(table_pages, g, s.cr3, {})
  if not ok or #ranges + #tables > 16 then return end
  for _, r in ipairs(tables) do ranges[#ranges + 1] = r end
  cpu:declare_sandbox{ ranges = ranges, clean = { entry } }
end

-- The end of a system call from ring 3 (mode "user"): the VCPU back in
-- ring 3 after the syscall instruction, with the RFLAGS it had (syscall
-- left them in rcx and r11); ring3 = { cs, ss } its segments.
function stubs.syscall_return(cpu, ring3)
  local rip = cpu.rcx
  cpu.rip, cpu.rflags = rip, cpu.r11 | 2
  cpu:write_sregs{ cs = ring3.cs, ss = ring3.ss }
  return { type = "syscall", rip = rip }
end

-- If e is the stubs' report (an OUT to port 0xEE from their common tail),
-- unwinds the frame the CPU pushed and returns the exception exit;
-- otherwise nil.
--
-- Mode "user": a fault at the syscall entry (ring3.syscall) in ring 3 with
-- IF clear is the system call itself, returned as such: the host moved RIP
-- to the entry and masked RFLAGS (SFMASK clears IF) but left CS and SS at
-- ring 3's, so the ring-0 entry could not run.  kvm-pvm does that (a #PF
-- there, which leaves CR2 at the entry).  Ring 3 cannot clear IF (popf
-- keeps it at IOPL 0, cli faults), so on other hosts this never applies.
function stubs.take(cpu, e)
  local info = stubs.cpus[cpu]
  if not info or e.type ~= "io" or e.port ~= stubs.EXCEPTION_PORT or not e.write then return nil end
  if cpu.rip ~= info.report then return nil end     -- the guest's own OUT to 0xEE
  -- the stack: saved rax, vector, error code, then the CPU's frame
  local rax, vector, err, rip, _, rflags, rsp = string.unpack("<I8I8I8I8I8I8I8", cpu:guest():read(cpu.rsp, 56))
  local ring3 = info.ring3
  if ring3 and rip == ring3.syscall and rflags & 0x200 == 0 then
    cpu:write_state{ rax = rax, rsp = rsp }
    return stubs.syscall_return(cpu, ring3)
  end
  cpu:write_state{ rax = rax, rip = rip, rflags = rflags, rsp = rsp }
  if ring3 then cpu:write_sregs{ cs = ring3.cs, ss = ring3.ss } end
  local out = { type = "exception", vector = vector, rip = rip }
  if stubs.HAS_ERROR_CODE[vector] then out.error_code = err end
  return out
end

return stubs
