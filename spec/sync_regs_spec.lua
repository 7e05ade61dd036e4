-- sync_regs_spec.lua - registers through the kvm_run page (KVM_CAP_SYNC_REGS)
-- and through ioctls (mv.guest{ sync_regs = false }, MOONVISOR_SYNC_REGS=0)
-- give the same guest.  Writes kept in kvm_run reach KVM before whatever
-- reads the same state: the next run, an MSR access, cpu:debug, an
-- injected interrupt.  On the soft backend the option changes nothing.
local mv = require "moonvisor"
local H = require "helpers"

for _, sync in ipairs{ true, false } do
  local opts = { sync_regs = sync }
  local label = sync and "with registers in kvm_run" or "with register ioctls"

  describe("vcpu registers " .. label, function()
    it("say which way they go", function()
      local g = H.guest(opts)
      local m = g:mechanisms()
      if H.kvm and sync then
        assert.equals(mv.caps().sync_regs & 7 == 7, m.sync_regs)
      else
        assert.is_false(m.sync_regs)
      end
    end)

    it("reach the guest and come back from it, in handlers too", function()
      local g, cpu = H.real("add ax, bx\nout 0xf0, al\nadd ax, cx\nhlt", opts)
      g:trap("io", 0xf0, 1, function(e, c)
        assert.equals(5, c.rax & 0xffff)
        c.rcx = 100
      end)
      cpu:write_state{ rax = 2, rbx = 3 }
      assert.equals("hlt", cpu:run{ timeout_ms = 5000 }.type)
      assert.equals(105, cpu.rax & 0xffff)
      assert.equals(0x1007, cpu.rip)   -- after the hlt
    end)

    it("take segment writes into the next run", function()
      local g, cpu, ram = H.real("mov al, [0]\nhlt", opts)
      ram:u8(0x2000, 0x5a)
      cpu:write_sregs{ ds = { selector = 0x200, base = 0x2000 } }
      assert.equals(0x2000, cpu:sregs().ds.base)
      assert.equals("hlt", cpu:run{ timeout_ms = 5000 }.type)
      assert.equals(0x5a, cpu.rax & 0xff)
    end)

    -- (the soft backend keeps FS_BASE and GS_BASE apart from the segments)
    it("agree with the MSRs that alias special registers #kvm", function()
      local g, cpu = H.moded("long", "hlt", opts)
      cpu:write_sregs{ fs = { base = 0x123000 } }
      assert.equals(0x123000, cpu:msr(0xc0000100))    -- FS_BASE
      cpu:msr(0xc0000101, 0x456000)                   -- GS_BASE
      assert.equals(0x456000, cpu:sregs().gs.base)
      assert.equals("hlt", cpu:run{ timeout_ms = 5000 }.type)
      assert.equals(0x123000, cpu:sregs().fs.base)
      assert.equals(0x456000, cpu:msr(0xc0000101))
    end)

    it("come back with a restore, and an interrupt injected after it is taken", function()
      -- real mode: IVT entry 0x20 -> 0x1100 (mov byte [0x500], 1 / iret)
      local g, cpu, ram = H.real("sti\nl: hlt\njmp l", opts)
      g:write(0x1100, H.asm("org 0x1100\nmov byte [0x500], 1\niret"))
      ram:u32(0x20 * 4, 0x1100)
      cpu:write_state{ rsp = 0x8000, rbx = 7 }
      local s = g:snapshot()
      assert.equals("hlt", cpu:run{ timeout_ms = 5000 }.type)
      cpu.rbx = 9
      g:restore(s)
      assert.equals(7, cpu.rbx)
      assert.equals(0x1000, cpu.rip)
      cpu:interrupt(0x20)
      assert.equals("hlt", cpu:run{ timeout_ms = 5000 }.type)   -- sti; hlt (the first one)
      if ram:u8(0x500) == 0 then assert.equals("hlt", cpu:run{ timeout_ms = 5000 }.type) end
      assert.equals(1, ram:u8(0x500))
    end)

    it("single-step from where the host put rip", function()
      local g, cpu = H.real("nop\nnop\ninc ax\nhlt", opts)
      cpu.rip = 0x1002
      cpu:debug{ singlestep = true }
      local e = cpu:enter()
      cpu:debug()
      assert.equals("debug", e.type)
      assert.equals(1, cpu.rax & 0xffff)
      assert.equals(0x1003, cpu.rip)
    end)

    it("switch modes through write_sregs and refuse what the host does not apply", function()
      local g, cpu = H.moded("protected", "mov eax, cr0\nhlt", opts)
      assert.equals(1, cpu:sregs().cr0 & 1)
      assert.equals("hlt", cpu:run{ timeout_ms = 5000 }.type)
      assert.equals(1, cpu.rax & 1)
      if H.kvm and not mv.host().paging_without_long_mode then
        assert.has_error(function() cpu:write_sregs{ cr0 = cpu:sregs().cr0 | 0x80000000, cr3 = 0x4000 } end)
        assert.equals(0, cpu:sregs().cr0 & 0x80000000)
      end
    end)
  end)
end
