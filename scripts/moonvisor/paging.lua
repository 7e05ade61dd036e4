-- moonvisor.paging: linear -> physical through the guest's page tables, as
-- the CPU walks them (no access checks: present bits only).  Used by the gdb
-- stub (moonvisor.gdb) and the REPL helpers (moonvisor.repl).
--
--   paging.translate(cpu, linear)      -> physical, or nil when not mapped
--   paging.walk(g, sregs, linear)      -> the same with cpu:guest() and
--                                         cpu:sregs() already at hand
--
-- Formats: paging off (linear is physical), 4-level (long mode: PML4,
-- PDPT with 1 GiB pages, PD with 2 MiB pages, PT), PAE (4-entry PDPT, PD
-- with 2 MiB pages, PT) and 32-bit (PD with 4 MiB pages when CR4.PSE is
-- set, PSE-36 high bits included, PT).  Tables outside guest memory count
-- as not mapped.
local M = {}

local CR0_PG, CR4_PSE, CR4_PAE, EFER_LMA = 0x80000000, 0x10, 0x20, 0x400
local MASK = 0x000ffffffffff000   -- a table or 4 KiB page address in a 64-bit entry
local PS = 0x80                   -- a large page

-- The two lowest levels, shared by long mode and PAE: the page directory
-- entry e (2 MiB page or a page table) and the page table below it.
local function from_pde(g, e, addr)
  if e & 1 == 0 then return nil end
  if e & PS ~= 0 then return (e & 0x000fffffffe00000) | (addr & 0x1fffff) end
  e = g:u64((e & MASK) + ((addr >> 12) & 511) * 8)
  if e & 1 == 0 then return nil end
  return (e & MASK) | (addr & 0xfff)
end

local function long4(g, s, addr)
  local e = g:u64((s.cr3 & MASK) + ((addr >> 39) & 511) * 8)
  if e & 1 == 0 then return nil end
  e = g:u64((e & MASK) + ((addr >> 30) & 511) * 8)
  if e & 1 == 0 then return nil end
  if e & PS ~= 0 then return (e & 0x000fffffc0000000) | (addr & 0x3fffffff) end
  return from_pde(g, g:u64((e & MASK) + ((addr >> 21) & 511) * 8), addr)
end

local function pae(g, s, addr)
  addr = addr & 0xffffffff
  local e = g:u64((s.cr3 & 0xffffffe0) + ((addr >> 30) & 3) * 8)
  if e & 1 == 0 then return nil end
  return from_pde(g, g:u64((e & MASK) + ((addr >> 21) & 511) * 8), addr)
end

local function legacy(g, s, addr)
  addr = addr & 0xffffffff
  local e = g:u32((s.cr3 & 0xfffff000) + (addr >> 22) * 4)
  if e & 1 == 0 then return nil end
  if e & PS ~= 0 and s.cr4 & CR4_PSE ~= 0 then
    return (e & 0xffc00000) | (((e >> 13) & 0xff) << 32) | (addr & 0x3fffff)
  end
  e = g:u32((e & 0xfffff000) + ((addr >> 12) & 1023) * 4)
  if e & 1 == 0 then return nil end
  return (e & 0xfffff000) | (addr & 0xfff)
end

-- g: the guest (its memory holds the tables); s: cpu:sregs() (cr0, cr3,
-- cr4, efer).  Returns the physical address or nil.
function M.walk(g, s, addr)
  if s.cr0 & CR0_PG == 0 then return addr end
  local walker = s.efer & EFER_LMA ~= 0 and long4 or s.cr4 & CR4_PAE ~= 0 and pae or legacy
  local ok, pa = pcall(walker, g, s, addr)
  return ok and pa or nil
end

-- The physical address of linear on cpu (a moonvisor.Vcpu), or nil.
function M.translate(cpu, addr)
  return M.walk(cpu:guest(), cpu:sregs(), addr)
end

return M
