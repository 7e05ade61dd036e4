-- cpuid_spec.lua - what CPUID tells a guest: every instruction-set feature
-- it advertises executes; the soft backend names its own CPU; cpu:cpuid_set
-- changes what the guest reads the same way on both backends.  Not tagged
-- #kvm: each spec runs in both passes.
local mv = require "moonvisor"
local H = require "helpers"

local DATA = 0x180000   -- 64-byte aligned scratch memory in the probes

-- CRC-32C (Castagnoli), reflected, as the crc32 instruction updates it.
local function crc32c(crc, bytes)
  for i = 1, #bytes do
    crc = crc ~ bytes:byte(i)
    for _ = 1, 8 do crc = (crc >> 1) ~ (0x82f63b78 & -(crc & 1)) end
  end
  return crc
end

-- A long-mode (CPL0) guest running `source`, then hlt.
local function long_guest(source)
  local g = H.guest()
  g:map(0, mv.vmo(0x400000))
  g:write(0x100000, H.asm("org 0x100000\n" .. source .. "\nhlt", 64))
  return g, g:vcpu{ entry = 0x100000, mode = "long", stack = 0x200000 }
end

-- CPUID as the guest sees it: { [leaf] = { eax, ebx, ecx, edx } } (subleaf 0).
local function guest_cpuid(leaves)
  local code = { "mov rdi, " .. DATA }
  for _, leaf in ipairs(leaves) do
    code[#code + 1] = ("mov eax, 0x%x\nxor ecx, ecx\ncpuid\nmov [rdi], eax\nmov [rdi+4], ebx\n" ..
                       "mov [rdi+8], ecx\nmov [rdi+12], edx\nadd rdi, 16"):format(leaf)
  end
  local g, cpu = long_guest(table.concat(code, "\n"))
  assert.equals("hlt", cpu:run{ timeout_ms = 5000 }.type)
  local out = {}
  for i, leaf in ipairs(leaves) do out[leaf] = { string.unpack("<I4I4I4I4", g:read(DATA + 16 * (i - 1), 16)) } out[leaf][5] = nil end
  g:close()
  return out
end

-- { name, leaf, register (1-4: eax..edx), bit, code[, check(cpu)] }: an
-- instruction of each feature, run at CPL0 when the CPUID advertises it.
local EAX, EBX, ECX, EDX = 1, 2, 3, 4
local probes = {
  { "fpu", 1, EDX, 0, "fld1\nfld1\nfaddp\nfistp word [rel out]\nmov ax, [rel out]\njmp done\nout: dw 0\ndone:",
    function(cpu) return cpu.rax & 0xffff == 2 end },
  { "tsc", 1, EDX, 4, "rdtsc" },
  { "msr", 1, EDX, 5, "mov ecx, 0xc0000080\nrdmsr" },
  { "cx8", 1, EDX, 8, "mov rdi, 0x180000\ncmpxchg8b [rdi]" },
  { "cmov", 1, EDX, 15, "xor eax, eax\nmov ebx, 7\ncmovz eax, ebx", function(cpu) return cpu.rax == 7 end },
  { "clflush", 1, EDX, 19, "clflush [0x180000]" },
  { "mmx", 1, EDX, 23, "movq mm0, [0x180000]\npaddb mm0, mm0\nemms" },
  { "fxsr", 1, EDX, 24, "fxsave [0x180000]\nfxrstor [0x180000]" },
  { "sse", 1, EDX, 25, "addps xmm0, xmm1" },
  { "sse2", 1, EDX, 26, "paddq xmm0, xmm1" },
  { "sse3", 1, ECX, 0, "haddps xmm0, xmm1" },
  { "pclmulqdq", 1, ECX, 1, "pclmulqdq xmm0, xmm1, 0" },
  { "ssse3", 1, ECX, 9, "pshufb xmm0, xmm1" },
  { "cx16", 1, ECX, 13, "mov rdi, 0x180000\nlock cmpxchg16b [rdi]" },
  { "sse4.1", 1, ECX, 19, "ptest xmm0, xmm1\npblendw xmm0, xmm1, 1" },
  { "sse4.2", 1, ECX, 20, "mov eax, 0xffffffff\nmov ebx, 0x12345678\ncrc32 eax, ebx\npcmpistri xmm0, xmm1, 0",
    function(cpu) return cpu.rax == crc32c(0xffffffff, string.pack("<I4", 0x12345678)) end },
  { "movbe", 1, ECX, 22, "mov dword [0x180000], 0x11223344\nmovbe eax, [0x180000]",
    function(cpu) return cpu.rax == 0x44332211 end },
  { "popcnt", 1, ECX, 23, "mov rax, 0xff00ff\npopcnt rbx, rax", function(cpu) return cpu.rbx == 16 end },
  { "aes", 1, ECX, 25, "pxor xmm0, xmm0\npxor xmm1, xmm1\naesenc xmm0, xmm1\nmovq rax, xmm0",
    function(cpu) return cpu.rax == 0x6363636363636363 end },   -- S-box(0) = 0x63 in every byte
  { "rdrand", 1, ECX, 30, "rdrand eax" },
  { "bmi1", 7, EBX, 3, "mov ebx, 0xf0\nmov ecx, 0xff\nandn eax, ebx, ecx\nmov edx, 0\ntzcnt edx, edx",
    function(cpu) return cpu.rax == 0x0f and cpu.rdx == 32 end },   -- tzcnt of 0 is the width; bsf would not write
  { "bmi2", 7, EBX, 8, "mov ebx, 0xff\nmov ecx, 0xf0f0\npdep eax, ebx, ecx\nmov edx, 4\nshlx edx, ecx, edx",
    function(cpu) return cpu.rax == 0xf0f0 and cpu.rdx == 0xf0f00 end },   -- source 0xff into mask 0xf0f0
  { "rdseed", 7, EBX, 18, "rdseed eax" },
  { "adx", 7, EBX, 19, "xor eax, eax\nmov ebx, 1\nadcx eax, ebx\nadox eax, ebx", function(cpu) return cpu.rax == 2 end },
  { "clflushopt", 7, EBX, 23, "clflushopt [0x180000]" },
  { "sha", 7, EBX, 29, "sha1nexte xmm0, xmm1" },
  { "lahf-lm", 0x80000001, ECX, 0, "lahf\nsahf" },
  { "lzcnt", 0x80000001, ECX, 5, "mov rax, 1\nlzcnt rbx, rax", function(cpu) return cpu.rbx == 63 end },   -- bsr gives 0
  { "rdtscp", 0x80000001, EDX, 27, "rdtscp" },
}

-- Advertised bits no instruction above shows, each shown otherwise: PAE and
-- long mode by every long-mode guest, SYSCALL by mode = "user" (its system
-- call exits).
local architectural = { ["1:4:6"] = "pae", ["2147483649:4:11"] = "syscall", ["2147483649:4:29"] = "lm" }

describe("CPUID", function()
  it("advertises only instruction-set features that execute", function()
    local id = guest_cpuid{ 1, 7, 0x80000001 }
    local ran, failed, known = 0, {}, {}
    for _, p in ipairs(probes) do
      local name, leaf, r, bit, code, check = table.unpack(p)
      known[("%d:%d:%d"):format(leaf, r, bit)] = true
      if id[leaf][r] >> bit & 1 == 1 then
        ran = ran + 1
        local g, cpu = long_guest(code)
        local e = cpu:run{ timeout_ms = 5000 }
        if e.type ~= "hlt" or (check and not check(cpu)) then
          failed[#failed + 1] = ("%s: %s%s"):format(name, e.type, e.vector and " " .. e.vector or "")
        end
        g:close()
      end
    end
    assert.same({}, failed)
    assert.is_true(ran >= 15, "only " .. ran .. " features advertised")
    if not H.kvm then   -- the soft CPU's list is its own: every bit it sets is one of the above
      local unknown = {}
      for _, leaf in ipairs{ 1, 7, 0x80000001 } do
        for r = leaf == 7 and EBX or ECX, EDX do   -- the feature registers
          for bit = 0, 31 do
            local key = ("%d:%d:%d"):format(leaf, r, bit)
            if id[leaf][r] >> bit & 1 == 1 and not known[key] and not architectural[key] then unknown[#unknown + 1] = key end
          end
        end
      end
      assert.same({}, unknown)
    end
  end)

  it("names the CPU: the soft backend's own, or the host's on KVM", function()
    local id = guest_cpuid{ 0, 0x80000002, 0x80000003, 0x80000004 }
    local vendor = string.pack("<I4I4I4", id[0][2], id[0][4], id[0][3])
    local brand = ""
    for leaf = 0x80000002, 0x80000004 do brand = brand .. string.pack("<I4I4I4I4", table.unpack(id[leaf])) end
    brand = brand:gsub("%z+$", "")
    if H.kvm then
      local f = assert(io.open("/proc/cpuinfo"))
      local host = f:read("a"):match("vendor_id%s*:%s*(%S+)")
      f:close()
      assert.equals(host, vendor)
    else
      assert.equals("MoonvisorCPU", vendor)
      assert.equals("moonvisor soft CPU (Unicorn 2.0.1)", brand)
      assert.same({ 7, 0x80000008 }, { id[0][1], guest_cpuid{ 0x80000000 }[0x80000000][1] })
    end
  end)
end)

describe("cpu:cpuid_set()", function()
  -- A real-mode guest storing CPUID (eax, ecx given) at 0x2000 + 16*i.
  local function run_cpuid(set, queries)
    local code = { "mov di, 0x2000" }
    for _, q in ipairs(queries) do
      code[#code + 1] = ("mov eax, 0x%x\nmov ecx, 0x%x\ncpuid\nmov [di], eax\nmov [di+4], ebx\n" ..
                         "mov [di+8], ecx\nmov [di+12], edx\nadd di, 16"):format(q[1], q[2])
    end
    local g = H.guest()
    g:map(0, mv.vmo(0x10000))
    g:write(0x1000, H.asm(table.concat(code, "\n") .. "\nhlt"))
    local cpu = g:vcpu{ entry = 0x1000 }
    set(cpu)
    assert.equals("hlt", cpu:run{ timeout_ms = 5000 }.type)
    local out = {}
    for i = 1, #queries do out[i] = { string.unpack("<I4I4I4I4", g:read(0x2000 + 16 * (i - 1), 16)) } out[i][5] = nil end
    return out, cpu, g
  end

  it("sets what the guest reads, for every subleaf of a leaf that takes none", function()
    local regs = { eax = 0x000a0f11, ebx = 0x00010800, ecx = 0x00802201, edx = 0x078bfbff }
    local out, _, g = run_cpuid(function(cpu)
      cpu:cpuid_set(1, 0, regs)
      local a, b, c, d = string.unpack("<I4I4I4I4", "Differential\0\0\0\0")
      cpu:cpuid_set(0x80000002, nil, { eax = a, ebx = b, ecx = c, edx = d })
      cpu:cpuid_set(0x40000100, 0, { eax = 1, ebx = 2, ecx = 3, edx = 4 })
    end, { { 1, 0 }, { 1, 5 }, { 0x80000002, 0 }, { 0x40000100, 0 }, { 0x40000100, 9 } })
    for i = 1, 2 do
      -- EDX bit 9 (APIC) is the one bit KVM keeps in step with the APIC base MSR
      assert.same({ regs.eax, regs.ebx, regs.ecx, regs.edx & ~0x200 }, { out[i][1], out[i][2], out[i][3], out[i][4] & ~0x200 })
    end
    assert.equals("Differential", string.pack("<I4I4I4", table.unpack(out[3], 1, 3)))
    assert.same({ { 1, 2, 3, 4 }, { 1, 2, 3, 4 } }, { out[4], out[5] })
    g:close()
  end)

  it("sets one subleaf of a leaf that takes them, or of a new leaf set with a subleaf", function()
    local before = run_cpuid(function() end, { { 7, 0 } })
    local out, _, g = run_cpuid(function(cpu)
      cpu:cpuid_set(7, 1, { eax = 0x11, ebx = 0x22, ecx = 0x33, edx = 0x44 })
      cpu:cpuid_set(0x40000200, 2, { eax = 5, ebx = 6, ecx = 7, edx = 8 })
    end, { { 7, 1 }, { 7, 0 }, { 0x40000200, 2 }, { 0x40000200, 0 } })
    assert.same({ 0x11, 0x22, 0x33, 0x44 }, out[1])
    assert.same(before[1], out[2])            -- subleaf 0 as it was
    assert.same({ 5, 6, 7, 8 }, out[3])
    assert.are_not.same({ 5, 6, 7, 8 }, out[4])
    g:close()
  end)

  it("is refused once the VCPU has run", function()
    local _, cpu, g = run_cpuid(function() end, { { 0, 0 } })
    assert.has_error(function() cpu:cpuid_set(1, 0, { eax = 1 }) end,
      "vcpu:cpuid_set: the CPUID is fixed at the first enter: set it before")
    g:close()
  end)
end)
