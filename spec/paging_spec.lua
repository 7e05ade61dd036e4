-- paging_spec.lua - moonvisor.paging: linear -> physical through page tables
-- written by hand, in the three formats (4-level, PAE, 32-bit), with large
-- pages, not-present entries and tables outside guest memory.
local H = require "helpers"
local paging = require "moonvisor.paging"

local PG, PSE, PAE = 0x80000000, 0x10, 0x20
local host = require("moonvisor").host(H.backend)

-- Puts cpu in 32-bit or PAE paging and returns the translation to check.
-- A host that pages only in long mode (mv.host().paging_without_long_mode
-- false: kvm-pvm) must refuse the write by name; there the walk is checked
-- on the registers the guest would have had.
local function paged(cpu, changes)
  local s = cpu:sregs()
  for k, v in pairs(changes) do s[k] = v end
  if host.paging_without_long_mode then
    cpu:write_sregs(changes)
    return function(linear) return paging.translate(cpu, linear) end
  end
  local ok, err = pcall(cpu.write_sregs, cpu, changes)
  assert.is_false(ok)
  assert.matches("vcpu:write_sregs: the host did not apply cr0.PG = 1", err, 1, true)
  return function(linear) return paging.walk(cpu:guest(), s, linear) end
end

describe("paging.translate()", function()
  it("is the identity with paging off", function()
    local _, cpu = H.real("hlt")
    assert.equals(0x1234, paging.translate(cpu, 0x1234))
    assert.equals(0x12345678, paging.translate(cpu, 0x12345678))   -- even outside guest memory
  end)

  it("walks 4-level tables: 4 KiB, 2 MiB and 1 GiB pages", function()
    local g, cpu = H.moded("long", "hlt")
    g:u64(0x4000, 0x5000 | 3)                     -- PML4[0] -> PDPT
    g:u64(0x4000 + 8 * 511, 0x9000 | 3)           -- PML4[511] -> PDPT (the top 512 GiB)
    g:u64(0x5000, 0x6000 | 3)                     -- PDPT[0] -> PD
    g:u64(0x6000, 0x83)                           --   PD[0]: 2 MiB at 0
    g:u64(0x6008, 0x7000 | 3)                     --   PD[1] -> PT
    g:u64(0x7000 + 8 * 5, 0x3000 | 3)             --     PT[5]: 0x205000 -> 0x3000
    g:u64(0x5008, 0x40000000 | 0x83)              -- PDPT[1]: 1 GiB page at 1 GiB
    g:u64(0x9000 + 8 * 510, 0x180000000 | 0x83)   -- PDPT[510] of the top: 1 GiB at 6 GiB
    cpu:write_sregs { cr3 = 0x4000 }
    assert.equals(0x1234, paging.translate(cpu, 0x1234))
    assert.equals(0x3abc, paging.translate(cpu, 0x205abc))
    assert.is_nil(paging.translate(cpu, 0x206000))                  -- PT[6] not present
    assert.equals(0x40000000 + 0x123456, paging.translate(cpu, 0x40123456))
    assert.is_nil(paging.translate(cpu, 0x80000000))                 -- PDPT[2]
    assert.is_nil(paging.translate(cpu, 0x8000000000))               -- PML4[1]
    assert.equals(0x180000042, paging.translate(cpu, -0x80000000 + 0x42))   -- 0xffffffff80000042
  end)

  it("walks PAE tables: 4 KiB and 2 MiB pages, 4 PDPT entries", function()
    local g, cpu = H.moded("protected", "hlt")
    g:u64(0x4000, 0x5000 | 1)                     -- PDPT[0] -> PD (PAE PDPTEs: present only)
    g:u64(0x4018, 0x6000 | 1)                     -- PDPT[3] -> PD (3 .. 4 GiB)
    g:u64(0x5000, 0x83)                           --   PD[0]: 2 MiB at 0
    g:u64(0x5008, 0x7000 | 3)                     --   PD[1] -> PT
    g:u64(0x7000 + 8 * 0x1ff, 0x3000 | 3)         --     PT[511]: 0x3ff000 -> 0x3000
    g:u64(0x6000 + 8 * 511, 0x100000000 | 0x83)   --   PD[511] of 3 GiB: 2 MiB above 4 GiB
    local s = cpu:sregs()
    local translate = paged(cpu, { cr3 = 0x4000, cr4 = s.cr4 | PAE, cr0 = s.cr0 | PG })
    assert.equals(0x5678, translate(0x5678))
    assert.equals(0x3fff, translate(0x3fffff))
    assert.is_nil(translate(0x3fe000))                               -- PT[510]
    assert.is_nil(translate(0x40000000))                             -- PDPT[1]
    assert.equals(0x100012345, translate(0xffe12345))
  end)

  it("walks 32-bit tables: 4 KiB pages, and 4 MiB pages only with CR4.PSE", function()
    local g, cpu = H.moded("protected", "hlt")
    g:u32(0x4000, 0x5000 | 3)                     -- PD[0] -> PT
    g:u32(0x5000 + 4 * 0x10, 0x3000 | 3)          --   PT[0x10]: 0x10000 -> 0x3000
    g:u32(0x4000 + 4 * 0x300, 0x00400000 | 0x83)  -- PD[0x300]: 4 MiB page at 4 MiB (0xc0000000)
    g:u32(0x4000 + 4 * 0x301, 0x00002000 | 0x83)  -- PD[0x301]: PSE-36, 4 MiB at 1 << 32 (bits 13..20)
    local s = cpu:sregs()
    local translate = paged(cpu, { cr3 = 0x4000, cr4 = (s.cr4 | PSE) & ~PAE, cr0 = s.cr0 | PG })
    assert.equals(0x3321, translate(0x10321))
    assert.is_nil(translate(0x11000))                                -- PT[0x11]
    assert.is_nil(translate(0x400000))                               -- PD[1]
    assert.equals(0x00412345, translate(0xc0012345))
    assert.equals(0x100000000 + 0x54321, translate(0xc0454321))
    translate = paged(cpu, { cr3 = 0x4000, cr4 = s.cr4 & ~(PSE | PAE), cr0 = s.cr0 | PG })   -- without PSE: a page table at 4 MiB (outside RAM)
    assert.is_nil(translate(0xc0012345))
  end)
end)

describe("paging.walk()", function()
  it("takes the guest and sregs the caller already has", function()
    local g = H.guest()
    g:map(0, require("moonvisor").vmo(0x10000))
    g:u32(0x4000, 0x5000 | 3)
    g:u32(0x5000, 0x3000 | 3)
    local s = { cr0 = PG | 1, cr3 = 0x4000, cr4 = 0, efer = 0 }
    assert.equals(0x3010, paging.walk(g, s, 0x10))
    assert.is_nil(paging.walk(g, s, 0x1000))
    assert.is_nil(paging.walk(g, { cr0 = PG | 1, cr3 = 0x800000, cr4 = 0, efer = 0 }, 0x10))   -- tables outside memory
    assert.equals(0x10, paging.walk(g, { cr0 = 1, cr3 = 0, cr4 = 0, efer = 0 }, 0x10))
    g:close()
  end)
end)
