-- moonvisor.dev.irqchip: the PC's interrupt controllers and timer -- two
-- 8259 PICs, the 8254 PIT, an I/O APIC and a local APIC per VCPU -- as KVM
-- emulates them in the kernel (guests made with irqchip = true), and the
-- object the other devices raise their interrupt lines through.
--
--   local ic = require("moonvisor.dev.irqchip").new(g, { in_kernel = true })
--   ic:irq(line, level)       -- level 1/0 on GSI `line` (KVM_IRQ_LINE)
--   ic.in_kernel, ic.ports, ic.mmio      what the kernel handles, for reports
--   ic:stats() -> { delivered = bool, lines = { [line] = { raises =, level = } } }
--   ic.virtual_wire_stub(post) -> 32-bit firmware code (see below)
--
-- In the kernel (KVM): PIC master 0x20-0x21, slave 0xa0-0xa1, ELCR
-- 0x4d0-0x4d1, PIT 0x40-0x43 and the speaker gate 0x61, the I/O APIC at
-- 0xfec00000 and the local APICs at 0xfee00000.  KVM's default routing sends
-- GSI 0-15 to the PIC pin and the I/O APIC pin of the same number (so the
-- PIT, GSI 0, is I/O APIC pin 0: no IRQ0 -> GSI2 override) and GSI 16-23 to
-- the I/O APIC.  None of these accesses reaches Lua.
--
-- The soft backend has no irqchip: none of the above exists there.  Their
-- ports and addresses are unclaimed (they read all-ones and are counted by
-- the machine), ic:irq records the line and its level but delivers nothing,
-- and a guest that waits for an interrupt in protected or long mode waits
-- for ever (the machine reports that as a halt with nothing to wake it).
-- Guests that poll (the UART's LSR, the PM timer) run the same on both.
local M = {}
local Irqchip = {}
Irqchip.__index = Irqchip
M.Irqchip = Irqchip

M.PORTS = { { 0x20, 2, "PIC master" }, { 0xa0, 2, "PIC slave" }, { 0x4d0, 2, "ELCR" },
            { 0x40, 4, "PIT" }, { 0x61, 1, "PIT speaker gate" } }
M.MMIO = { { 0xfec00000, 0x1000, "I/O APIC" }, { 0xfee00000, 0x1000, "local APIC" } }
M.LAPIC_ADDR, M.IOAPIC_ADDR = 0xfee00000, 0xfec00000

function M.new(g, opts)
  opts = opts or {}
  local self = setmetatable({ g = g, in_kernel = opts.in_kernel == true, lines = {},
                              ports = M.PORTS, mmio = M.MMIO }, Irqchip)
  return self
end

function Irqchip:irq(line, level)
  local l = self.lines[line]
  if not l then l = { raises = 0, level = 0 } self.lines[line] = l end
  if level ~= 0 and l.level == 0 then l.raises = l.raises + 1 end
  l.level = level ~= 0 and 1 or 0
  if self.in_kernel then self.g:irq(line, l.level) end
end

function Irqchip:stats()
  local lines = {}
  for k, v in pairs(self.lines) do lines[k] = { raises = v.raises, level = v.level } end
  return { delivered = self.in_kernel, lines = lines }
end

function Irqchip:remove() end

-- What PC firmware leaves behind and KVM's reset state does not have: the
-- boot CPU's local APIC software-enabled in virtual wire mode (LINT0
-- ExtINT, so the 8259s reach the CPU; LINT1 NMI), as SeaBIOS sets it up
-- under QEMU.  Returns 32-bit code for address `at` (protected mode, paging
-- off) that writes the three registers, then hands over: writes POST code
-- `post` to port 0x80 (the machine's handler for that write, at address
-- at + M.STUB_HANDOVER, loads the kernel's entry registers), and would stop
-- with cli; hlt if nothing took the handover.
M.STUB_HANDOVER = 34
function M.virtual_wire_stub(post)
  local function mov(reg, v) return "\xc7\x05" .. string.pack("<I4I4", M.LAPIC_ADDR + reg, v) end
  return mov(0xf0, 0x1ff)              -- SVR: APIC enabled, spurious vector 0xff
      .. mov(0x350, 0x8700)            -- LVT LINT0: ExtINT, level
      .. mov(0x360, 0x0400)            -- LVT LINT1: NMI
      .. "\xb0" .. string.char(post)   -- mov al, post
      .. "\xe6\x80"                    -- out 0x80, al   (the handover)
      .. "\xfa\xf4"                    -- cli; hlt
end

return M
