-- mode_spec.lua - g:vcpu{ mode = ... }: each guest proves it runs in its
-- mode by reading control registers and using that mode's registers.
local mv = require "moonvisor"
local H = require "helpers"

describe("mode = \"protected\"", function()
  it("runs 32-bit code with flat segments, PE set and paging off", function()
    local g, cpu = H.moded("protected", [[
      mov eax, cr0
      mov ebx, 0x12345678     ; a 32-bit immediate: 16-bit code could not
      mov [0x100000], ebx     ; flat data segment reaches 1 MiB
      mov ecx, [0x100000]
      mov dx, ds
      hlt]])
    assert.equals("hlt", cpu:run{ timeout_ms = 5000 }.type)
    local r = cpu:read_state()
    assert.equals(1, r.rax & 1)                      -- PE
    assert.equals(0, r.rax & 0x80000000)             -- PG off
    assert.equals(0x12345678, r.rcx)
    assert.equals(mv.x86.DATA, r.rdx & 0xffff)
    local s = cpu:sregs()
    assert.equals(mv.x86.CODE32, s.cs.selector)
    assert.equals(1, s.cs.db)
    assert.equals(0, s.cs.base)
  end)

  it("reaches an MMIO trap above RAM", function()
    local g, cpu = H.moded("protected", "mov eax, [0xfee00020]\nhlt")
    g:trap("mem", 0xfee00000, 0x1000, function(e) return 0xabcd0000 + e.size end)
    assert.equals("hlt", cpu:run{ timeout_ms = 5000 }.type)
    assert.equals(0xabcd0004, cpu.rax)
  end)
end)

describe("mode = \"long\"", function()
  it("runs 64-bit code with paging, LMA and NX set", function()
    local g, cpu = H.moded("long", [[
      mov rax, 0x1122334455667788   ; a 64-bit immediate
      mov r9, rax
      mov r13, cr0
      mov rcx, 0xc0000080
      rdmsr                         ; EFER into edx:eax
      mov r10, rax
      mov r11, cr4
      mov eax, 0x80000001
      cpuid                         ; edx bit 20: the CPU offers NX
      mov r12, rdx
      hlt]])
    assert.equals("hlt", cpu:run{ timeout_ms = 5000 }.type)
    local r = cpu:read_state()
    assert.equals(0x1122334455667788, r.r9)
    assert.equals(0x80000001, r.r13 & 0x80000001)    -- PG and PE
    assert.equals(0x400, r.r10 & 0x400)              -- LMA
    assert.equals((r.r12 >> 20 & 1) << 11, r.r10 & 0x800)   -- NXE, where the CPU has NX
    assert.equals(0x20, r.r11 & 0x20)                -- PAE
    local s = cpu:sregs()
    assert.equals(1, s.cs.l)
    assert.equals(mv.x86.CODE64, s.cs.selector)
  end)

  it("identity-maps the first 4 GiB: an MMIO trap near 4 GiB answers", function()
    local g, cpu = H.moded("long", [[
      mov rsi, 0xfffff000
      mov eax, [rsi]
      mov qword [rsi + 8], 7
      hlt]])
    local wrote
    g:trap("mem", 0xfffff000, 0x1000, function(e)
      if e.write then wrote = wrote or e.addr else return 0x5a5a5a5a end   -- soft splits 8-byte writes
    end)
    assert.equals("hlt", cpu:run{ timeout_ms = 5000 }.type)
    assert.equals(0x5a5a5a5a, cpu.rax)
    assert.equals(0xfffff008, wrote)
  end)

  it("puts the tables where asked and keeps the stack below them", function()
    local g = H.guest()
    g:map(0, mv.vmo(0x200000))
    g:write(0x1000, H.asm("push rax\nhlt", 64))
    local cpu = g:vcpu{ entry = 0x1000, mode = "long", tables = 0x80000 }
    assert.equals(0x81000, cpu:sregs().cr3)
    assert.equals(0x80000, cpu.rsp)
    assert.equals("hlt", cpu:run{ timeout_ms = 5000 }.type)
    assert.equals(0x80000 - 8, cpu.rsp)
    cpu:close()
    local cpu2 = g:vcpu{ entry = 0x1000, mode = "long", stack = 0x70000, tables = 0x90000 }
    assert.equals(0x70000, cpu2.rsp)
  end)

  it("reports faults as exception exits with vector, error code and rip, and resumes at the fault", function()
    local g, cpu = H.moded("long", [[
      mov eax, 1
      ud2                             ; #UD at 0x1005
      mov rbx, 0x8000000000000000
      mov rax, [rbx]                  ; non-canonical: #GP(0) at 0x1011
      mov rbx, 0x180000000
      mov byte [rbx], 1               ; above RAM, inside the identity map: no trap, an MMIO exit
      hlt]])
    local function fault(e) return { e.type, e.vector, e.error_code, e.rip } end
    local e = cpu:run{ timeout_ms = 5000 }
    assert.same({ "exception", 6, nil, 0x1005 }, fault(e))
    assert.equals(0x1005, cpu.rip)
    assert.equals(1, cpu.rax)
    assert.same(fault(e), fault(cpu:run{ timeout_ms = 5000 }))   -- not moved on: the same fault again
    cpu.rip = 0x1007
    e = cpu:run{ timeout_ms = 5000 }
    assert.same({ "exception", 13, 0, 0x1011 }, fault(e))
  end)

  it("reports a page fault with its error code, also with a broken stack pointer", function()
    local g, cpu = H.moded("long", [[
      mov rsp, 0x7fff00000000         ; canonical, not mapped
      push rax                        ; #PF (write, not present) at 0x100a
      hlt]])
    local e = cpu:run{ timeout_ms = 5000 }
    assert.same({ "exception", 14, 2, 0x100a }, { e.type, e.vector, e.error_code, e.rip })
    assert.equals(0x7fff00000000, cpu.rsp)
  end)

  it("leaves a guest's own OUT to port 0xEE alone", function()
    local g, cpu = H.moded("long", "mov eax, 3\nout 0xee, eax\nhlt")
    local e = cpu:run{ timeout_ms = 5000 }
    assert.same({ "io", 0xee, 3 }, { e.type, e.port, e.data })
  end)

  it("installs no IDT with exceptions = false", function()
    local g = H.guest()
    g:map(0, mv.vmo(0x200000))
    local cpu = g:vcpu{ entry = 0x1000, mode = "long", exceptions = false }
    assert.equals(0, cpu:sregs().idt.limit)
    local cpu2 = g:vcpu{ entry = 0x1000, mode = "long" }
    assert.equals(32 * 16 - 1, cpu2:sregs().idt.limit)
  end)

  it("refuses an unknown mode and a guest without room for the tables", function()
    local g = H.guest()
    assert.has_error(function() g:vcpu{ mode = "hyper" } end,
      'guest:vcpu: unknown mode hyper (modes: "long", "protected", "real", "user")')
    assert.has_error(function() g:vcpu{ mode = "long" } end,
      "guest:vcpu: no RAM mapping large enough for the GDT and page tables (map RAM first or give tables = address)")
  end)
end)

describe("the modes' modules", function()
  -- A fresh build/moonvisor, so that no other spec has loaded them already.
  local function loaded_after(code)
    local exe = os.getenv("MOONVISOR_EXE") or "build/moonvisor"
    local out = H.sh(("MOONVISOR_BACKEND=soft %s -e '%s'"):format(exe, code .. [[
      local t = {}
      for _, m in ipairs{ "x86", "modes", "mode_long", "user" } do
        if package.loaded["moonvisor." .. m] then t[#t + 1] = m end
      end
      print(table.concat(t, " "))]]))
    return (out:gsub("\n$", ""))
  end

  it("are loaded with the first VCPU given their mode, and not before", function()
    local guest = "local mv = require \"moonvisor\" local g = mv.guest{} g:map(0, mv.vmo(0x100000)) "
    assert.equals("", loaded_after(guest .. "g:vcpu{}"))
    assert.equals("x86 modes", loaded_after(guest .. "g:vcpu{ mode = \"protected\" }"))
    assert.equals("x86 modes mode_long", loaded_after(guest .. "g:vcpu{ mode = \"long\" }"))
    assert.equals("x86 modes mode_long user", loaded_after(guest .. "g:vcpu{ mode = \"user\" }"))
    assert.equals("x86", loaded_after("local mv = require \"moonvisor\" assert(mv.x86.CODE64 == 0x18)"))
  end)
end)

describe("x86.describe()", function()
  it("names the set bits of rflags, cr0, cr4 and efer", function()
    assert.equals("PE ET PG", mv.x86.describe("cr0", 0x80000011))
    assert.equals("ZF IF IOPL=3", mv.x86.describe("rflags", 0x3242))
    assert.equals("PAE OSFXSR", mv.x86.describe("cr4", 0x220))
    assert.equals("SCE LME LMA NXE", mv.x86.describe("efer", 0xd01))
    assert.has_error(function() mv.x86.describe("cr9", 1) end, "x86.describe: no flag names for cr9")
  end)

  it("shows in the REPL's register view", function()
    local g, cpu = H.moded("long", "hlt")
    local view = require("moonvisor.repl").regs(cpu)
    assert.matches("cr0 %[PE MP ET NE WP PG%]", view)
    assert.matches("efer %[[%u ]*LME LMA", view)   -- Unicorn keeps neither SCE nor NXE
  end)
end)
