-- x86.lua - what the CPU reads when moonvisor sets a VCPU up: GDT
-- selectors, control-register bits, segment descriptors and the hidden
-- part of segment registers, the names of flag bits (the identity page
-- tables are moonvisor.mode_long's).
-- Readable Lua, meant to be copied and changed.  moonvisor.modes puts a
-- VCPU in a mode (g:vcpu{ mode = ... }) with these.
--
-- Layout at `tables` (the modes' default: the last 36 KiB of the lowest RAM
-- mapping): +0 GDT, +0x1000 PML4, +0x2000 PDPT, +0x3000..+0x6fff four page
-- directories; mode long adds +0x7000 IDT, +0x7200 exception stubs, +0x7440
-- TSS, the stubs' stack up to +0x8000.
local x86 = {}

x86.TABLES_SIZE = 0x8000

-- GDT selectors, the same in every mode.
x86.CODE32, x86.DATA, x86.CODE64 = 0x08, 0x10, 0x18

x86.CR0 = { PE = 1 << 0, MP = 1 << 1, EM = 1 << 2, TS = 1 << 3, ET = 1 << 4, NE = 1 << 5,
            WP = 1 << 16, AM = 1 << 18, NW = 1 << 29, CD = 1 << 30, PG = 1 << 31 }
x86.CR4 = { PSE = 1 << 4, PAE = 1 << 5, PGE = 1 << 7, OSFXSR = 1 << 9, OSXMMEXCPT = 1 << 10 }
x86.EFER = { SCE = 1 << 0, LME = 1 << 8, LMA = 1 << 10, NXE = 1 << 11 }

-- The set bits of a flags register by name: x86.describe("cr0", 0x80000011)
-- is "PE ET PG"; rflags also shows its IOPL when not 0.  The names are
-- "bit:NAME" words, split with the first call (a start needs none of them).
local NAMES = {
  rflags = "0:CF 2:PF 4:AF 6:ZF 7:SF 8:TF 9:IF 10:DF 11:OF 14:NT 16:RF 17:VM 18:AC 21:ID",
  cr0 = "0:PE 1:MP 2:EM 3:TS 4:ET 5:NE 16:WP 18:AM 29:NW 30:CD 31:PG",
  cr4 = "0:VME 1:PVI 2:TSD 3:DE 4:PSE 5:PAE 6:MCE 7:PGE 8:PCE 9:OSFXSR 10:OSXMMEXCPT 11:UMIP 13:VMXE "
     .. "16:FSGSBASE 17:PCIDE 18:OSXSAVE 20:SMEP 21:SMAP",
  efer = "0:SCE 8:LME 10:LMA 11:NXE 12:SVME 14:FFXSR",
}
local bits_of = {}
function x86.describe(register, value)
  local bits = bits_of[register]
  if not bits then
    local names = NAMES[register]
    if not names then error("x86.describe: no flag names for " .. tostring(register), 2) end
    bits = {}
    for bit, name in names:gmatch("(%d+):(%w+)") do bits[#bits + 1] = { tonumber(bit), name } end
    bits_of[register] = bits
  end
  local set = {}
  for _, b in ipairs(bits) do
    if value & (1 << b[1]) ~= 0 then set[#set + 1] = b[2] end
  end
  if register == "rflags" and (value >> 12) & 3 ~= 0 then set[#set + 1] = "IOPL=" .. ((value >> 12) & 3) end
  return table.concat(set, " ")
end

-- One 8-byte segment descriptor: base, limit (in 4 KiB units when g), type
-- and flags as the CPU reads them.
function x86.descriptor(base, limit, access, flags)
  return string.pack("<I2I2I1I1I1I1", limit & 0xffff, base & 0xffff, (base >> 16) & 0xff, access,
                     ((flags & 0xf) << 4) | ((limit >> 16) & 0xf), (base >> 24) & 0xff)
end

-- The GDT every mode shares: null, 32-bit code, data, 64-bit code; with
-- tss, a 16-byte TSS descriptor at 0x20 follows.
local descriptor = x86.descriptor

function x86.gdt(tss)
  return descriptor(0, 0, 0, 0)
      .. descriptor(0, 0xfffff, 0x9a, 0xc)   -- 0x08: code, 32-bit, 4 GiB
      .. descriptor(0, 0xfffff, 0x92, 0xc)   -- 0x10: data, 4 GiB
      .. descriptor(0, 0xfffff, 0x9a, 0xa)   -- 0x18: code, 64-bit (L)
      .. (tss and descriptor(tss, 0x67, 0x89, 0) .. string.pack("<I4I4", tss >> 32, 0) or "")
end
x86.TSS = 0x20

-- The hidden part of a flat 4 GiB segment register: code or data, 64-bit
-- code when long, at privilege dpl (default 0), as a GDT entry above has it.
function x86.segment(selector, code, long, dpl)
  return { selector = selector, base = 0, limit = 0xffffffff, present = 1, dpl = dpl or 0, s = 1,
           type = code and 11 or 3, db = long and 0 or 1, l = long and 1 or 0, g = 1, avl = 0, unusable = 0 }
end

-- Where the tables go when opts.tables is not given: the end of the lowest
-- RAM mapping, leaving 4 KiB above them.
function x86.default_tables(g, size)
  size = size or x86.TABLES_SIZE
  local lowest
  for _, m in ipairs(g:mappings()) do
    if not m.readonly and (not lowest or m.gpa < lowest.gpa) then lowest = m end
  end
  if not lowest or lowest.size < size + 0x1000 then
    error("guest:vcpu: no RAM mapping large enough for the GDT and page tables (map RAM first or give tables = address)", 4)
  end
  return lowest.gpa + lowest.size - ((size + 0x1fff) & ~0xfff)
end

return x86
