-- moonvisor.gdb_regs: the register file the gdb stub (moonvisor.gdb) shows
-- gdb: the two layouts (amd64 in 64-bit mode, i386 otherwise), the target
-- description, and the mapping between gdb's registers and the VCPU's:
--
--   general registers, rip/eip, eflags  cpu:read_state() / cpu:write_state()
--   cs ss ds es fs gs                   the selectors of cpu:sregs(); a write
--                                       changes the selector only
--                                       (cpu:write_sregs{ cs = { selector } })
--   st0-st7 (10 bytes each, ST(i))      cpu:fpu().st / cpu:write_fpu{ st }
--   fctrl, fstat                        fcw, fsw
--   ftag                                the full tag word gdb's i387 code
--                                       wants (2 bits per physical register),
--                                       made from the abridged FXSAVE byte
--                                       (cpu:fpu().ftw) and the register
--                                       contents; written back abridged
--   fiseg fioff foseg fooff fop         read as 0, writes ignored
--   xmm0-xmm15 (xmm0-7 for i386), mxcsr cpu:fpu().xmm, mxcsr
local M = {}

-- {====================================================== hex

-- Little-endian hex of v in bits (values wider than 64 bits: v in the low 64).
function M.lehex(v, bits)
  local out = {}
  for i = 0, bits // 8 - 1 do out[i + 1] = ("%02x"):format(i < 8 and (v >> (8 * i)) & 0xff or 0) end
  return table.concat(out)
end

function M.unlehex(h)
  local v = 0
  for i = math.min(#h // 2, 8), 1, -1 do v = (v << 8) | tonumber(h:sub(2 * i - 1, 2 * i), 16) end
  return v
end

function M.tohex(s) return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end

function M.fromhex(h)
  if #h % 2 ~= 0 or h:find("[^%x]") then return nil end
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

local lehex, unlehex, tohex, fromhex = M.lehex, M.unlehex, M.tohex, M.fromhex

-- }======================================================

-- {====================================================== layouts

local function reglist(spec)
  local regs = {}
  for name, bits in spec:gmatch("(%w+):(%d+)") do regs[#regs + 1] = { name = name, bits = tonumber(bits) } end
  return regs
end

local X87 = "st0:80 st1:80 st2:80 st3:80 st4:80 st5:80 st6:80 st7:80 fctrl:32 fstat:32 ftag:32 fiseg:32 fioff:32 foseg:32 fooff:32 fop:32 "
M.LAYOUT = {
  amd64 = reglist("rax:64 rbx:64 rcx:64 rdx:64 rsi:64 rdi:64 rbp:64 rsp:64 r8:64 r9:64 r10:64 r11:64 r12:64 r13:64 r14:64 r15:64 " ..
    "rip:64 eflags:32 cs:32 ss:32 ds:32 es:32 fs:32 gs:32 " .. X87 ..
    "xmm0:128 xmm1:128 xmm2:128 xmm3:128 xmm4:128 xmm5:128 xmm6:128 xmm7:128 xmm8:128 xmm9:128 xmm10:128 " ..
    "xmm11:128 xmm12:128 xmm13:128 xmm14:128 xmm15:128 mxcsr:32"),
  i386 = reglist("eax:32 ecx:32 edx:32 ebx:32 esp:32 ebp:32 esi:32 edi:32 eip:32 eflags:32 " ..
    "cs:32 ss:32 ds:32 es:32 fs:32 gs:32 " .. X87 ..
    "xmm0:128 xmm1:128 xmm2:128 xmm3:128 xmm4:128 xmm5:128 xmm6:128 xmm7:128 mxcsr:32"),
}
local LAYOUT = M.LAYOUT

-- gdb's name -> moonvisor's register.
local GPR = { eax = "rax", ecx = "rcx", edx = "rdx", ebx = "rbx", esp = "rsp", ebp = "rbp", esi = "rsi",
              edi = "rdi", eip = "rip", eflags = "rflags", rip = "rip" }
for _, r in ipairs { "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
                     "r12", "r13", "r14", "r15" } do GPR[r] = r end
local SEG = { cs = true, ss = true, ds = true, es = true, fs = true, gs = true }
local FPU_INT = { fctrl = "fcw", fstat = "fsw", mxcsr = "mxcsr" }
local ZERO = { fiseg = true, fioff = true, foseg = true, fooff = true, fop = true }

local TYPES = {
  rip = "code_ptr", eip = "code_ptr", rsp = "data_ptr", rbp = "data_ptr", esp = "data_ptr", ebp = "data_ptr",
  eflags = "i386_eflags", mxcsr = "i386_mxcsr",
}

-- The target description: gdb's core and sse features, one file.
function M.target_xml(arch)
  local regs, core_regs, sse_regs = LAYOUT[arch], {}, {}
  for i, r in ipairs(regs) do
    local ty = TYPES[r.name] or (r.bits == 80 and "i387_ext") or (r.bits == 128 and "vec128") or
               (arch == "amd64" and r.bits == 64 and "int64") or "int32"
    local line = ('    <reg name="%s" bitsize="%d" type="%s" regnum="%d"/>'):format(r.name, r.bits, ty, i - 1)
    if r.name:match("^xmm") or r.name == "mxcsr" then sse_regs[#sse_regs + 1] = line else core_regs[#core_regs + 1] = line end
  end
  return table.concat({
    '<?xml version="1.0"?>',
    '<!DOCTYPE target SYSTEM "gdb-target.dtd">',
    '<target version="1.0">',
    ("  <architecture>%s</architecture>"):format(arch == "amd64" and "i386:x86-64" or "i386"),
    '  <feature name="org.gnu.gdb.i386.core">',
    '    <flags id="i386_eflags" size="4">',
    '      <field name="CF" start="0" end="0"/><field name="" start="1" end="1"/>',
    '      <field name="PF" start="2" end="2"/><field name="AF" start="4" end="4"/>',
    '      <field name="ZF" start="6" end="6"/><field name="SF" start="7" end="7"/>',
    '      <field name="TF" start="8" end="8"/><field name="IF" start="9" end="9"/>',
    '      <field name="DF" start="10" end="10"/><field name="OF" start="11" end="11"/>',
    '      <field name="NT" start="14" end="14"/><field name="RF" start="16" end="16"/>',
    '      <field name="VM" start="17" end="17"/><field name="AC" start="18" end="18"/>',
    '      <field name="VIF" start="19" end="19"/><field name="VIP" start="20" end="20"/>',
    '      <field name="ID" start="21" end="21"/>',
    '    </flags>',
    table.concat(core_regs, "\n"),
    '  </feature>',
    '  <feature name="org.gnu.gdb.i386.sse">',
    '    <vector id="v4f" type="ieee_single" count="4"/><vector id="v2d" type="ieee_double" count="2"/>',
    '    <vector id="v16i8" type="int8" count="16"/><vector id="v8i16" type="int16" count="8"/>',
    '    <vector id="v4i32" type="int32" count="4"/><vector id="v2i64" type="int64" count="2"/>',
    '    <union id="vec128"><field name="v4_float" type="v4f"/><field name="v2_double" type="v2d"/>',
    '      <field name="v16_int8" type="v16i8"/><field name="v8_int16" type="v8i16"/>',
    '      <field name="v4_int32" type="v4i32"/><field name="v2_int64" type="v2i64"/>',
    '      <field name="uint128" type="uint128"/></union>',
    '    <flags id="i386_mxcsr" size="4">',
    '      <field name="IE" start="0" end="0"/><field name="DE" start="1" end="1"/>',
    '      <field name="ZE" start="2" end="2"/><field name="OE" start="3" end="3"/>',
    '      <field name="UE" start="4" end="4"/><field name="PE" start="5" end="5"/>',
    '      <field name="DAZ" start="6" end="6"/><field name="IM" start="7" end="7"/>',
    '      <field name="DM" start="8" end="8"/><field name="ZM" start="9" end="9"/>',
    '      <field name="OM" start="10" end="10"/><field name="UM" start="11" end="11"/>',
    '      <field name="PM" start="12" end="12"/><field name="FZ" start="15" end="15"/>',
    '    </flags>',
    table.concat(sse_regs, "\n"),
    '  </feature>',
    '</target>', "" }, "\n")
end

-- }======================================================

-- {====================================================== x87 tags

-- The tag of one 80-bit value: 0 valid, 1 zero, 2 special (NaN, infinity,
-- denormal, unnormal).
local function tag_of(st)
  local lo, hi = string.unpack("<I8I2", st)
  local exp = hi & 0x7fff
  if exp == 0x7fff then return 2 end
  if exp == 0 then return lo == 0 and 1 or 2 end
  return lo & (1 << 63) ~= 0 and 0 or 2
end

-- The full tag word from the abridged FXSAVE byte (bit p: physical register
-- p is not empty); st holds ST(0)..ST(7), ST(i) is physical (TOP + i) % 8.
function M.full_tag(ftw, fsw, st)
  local top, word = (fsw >> 11) & 7, 0
  for p = 0, 7 do
    local t = 3   -- empty
    if (ftw >> p) & 1 ~= 0 then t = tag_of(st[((p - top) & 7) + 1]) end
    word = word | (t << (2 * p))
  end
  return word
end

-- The abridged byte of a full tag word: every tag but 3 (empty) is a 1.
function M.abridged_tag(word)
  local ftw = 0
  for p = 0, 7 do
    if (word >> (2 * p)) & 3 ~= 3 then ftw = ftw | (1 << p) end
  end
  return ftw
end

-- }======================================================

-- {====================================================== reading and writing

-- All registers of arch as little-endian hex strings, in layout order.
function M.read(cpu, arch)
  local r, s, f = cpu:read_state(), cpu:sregs(), cpu:fpu()
  local out = {}
  for i, reg in ipairs(LAYOUT[arch]) do
    local name, hex = reg.name, nil
    local st, xmm = name:match("^st(%d)$"), name:match("^xmm(%d+)$")
    if st then hex = tohex(f.st[tonumber(st) + 1])
    elseif xmm then hex = tohex(f.xmm[tonumber(xmm) + 1])
    else
      local v = 0
      if GPR[name] then v = r[GPR[name]]
      elseif SEG[name] then v = s[name].selector
      elseif FPU_INT[name] then v = f[FPU_INT[name]]
      elseif name == "ftag" then v = M.full_tag(f.ftw, f.fsw, f.st) end
      hex = lehex(v, reg.bits)
    end
    out[i] = hex
  end
  return out
end

-- Writes registers: writes = { { reg = LAYOUT entry, hex = value }... }.
-- One write_state, write_sregs and write_fpu at most.  Returns false when a
-- value is malformed or the VCPU refuses it (all well-formed ones are still
-- tried).
function M.write(cpu, arch, writes)
  local ok = true
  local state, sregs, fpu = {}, {}, {}
  local cur_s, ftag
  for _, w in ipairs(writes) do
    local reg, hex = w.reg, w.hex
    local name = reg.name
    if #hex ~= reg.bits // 4 or hex:find("[^%x]") then
      ok = false
    elseif GPR[name] then
      local v = unlehex(hex)
      if name == "eflags" then v = v | 2 end
      if arch == "i386" then v = v & 0xffffffff end
      state[GPR[name]] = v
    elseif SEG[name] then
      cur_s = cur_s or cpu:sregs()
      local sel = unlehex(hex) & 0xffff
      if sel ~= cur_s[name].selector then sregs[name] = { selector = sel } end
    elseif name:match("^st%d$") then
      fpu.st = fpu.st or {}
      fpu.st[tonumber(name:sub(3)) + 1] = fromhex(hex)
    elseif name:match("^xmm%d+$") then
      fpu.xmm = fpu.xmm or {}
      fpu.xmm[tonumber(name:sub(4)) + 1] = fromhex(hex)
    elseif FPU_INT[name] then
      fpu[FPU_INT[name]] = unlehex(hex) & (name == "mxcsr" and 0xffffffff or 0xffff)
    elseif name == "ftag" then
      ftag = unlehex(hex) & 0xffff
    end   -- fiseg, fioff, foseg, fooff, fop: ignored
  end
  if ftag then fpu.ftw = M.abridged_tag(ftag) end   -- gdb's tags are derived: only empty/not counts
  if next(state) and not pcall(cpu.write_state, cpu, state) then ok = false end
  if next(sregs) and not pcall(cpu.write_sregs, cpu, sregs) then ok = false end
  if next(fpu) and not pcall(cpu.write_fpu, cpu, fpu) then ok = false end
  return ok
end

-- }======================================================

return M
