-- differential_spec.lua - the differential tester (moonvisor.conformance):
-- its parts on the backend under test, and in the kvm pass (#kvm) the CI
-- conformance run: every deviation spec/conformance_known.lua documents
-- still reproduces on kvm against soft, and a random run of
-- MOONVISOR_CONFORMANCE_CASES cases (default 300, fixed seed
-- MOONVISOR_CONFORMANCE_SEED or 1) finds no other.  The bounded run of
-- 5,000 cases seeded by the commit is `make conformance` / `make conformance-vm`.
local H = require "helpers"
local conformance = require "moonvisor.conformance"
local gen = require "moonvisor.conformance.gen"
local isa = require "moonvisor.conformance.isa"
local asm = require "moonvisor.conformance.asm"
local state = require "moonvisor.conformance.state"
local machine = require "moonvisor.conformance.machine"
local compare = require "moonvisor.conformance.compare"
local tester = require "moonvisor.conformance.tester"
local known = require "moonvisor.conformance.known"

local KNOWN = "spec/conformance_known.lua"

local function texts(c)
  local t = {}
  for i, inst in ipairs(c.seq) do t[i] = inst.text end
  return table.concat(t, "\n")
end

-- A result as machine:run gives it, from an initial state.
local function result(init)
  local regs = {}
  for k, v in pairs(init.regs) do regs[k] = v end
  return { exit = { type = "syscall" }, regs = regs, mem = init.mem, closing = true,
           fpu = { fcw = init.fpu.fcw, fsw = init.fpu.fsw, ftw = init.fpu.ftw, mxcsr = init.fpu.mxcsr,
                   st = init.fpu.st, xmm = init.fpu.xmm } }
end

describe("conformance tester", function()
  it("draws the same case from the same seed and index, and another from another index", function()
    local a, b, c = gen.case(42, 7), gen.case(42, 7), gen.case(42, 8)
    assert.equals(texts(a), texts(b))
    assert.same(a.init.regs, b.init.regs)
    assert.equals(a.init.mem, b.init.mem)
    assert.not_equals(texts(a) .. a.init.mem, texts(c) .. c.init.mem)
    assert.is_true(#a.seq >= 1 and #a.seq <= gen.MAX_LEN)
  end)

  it("assembles every template in every operand size, in one nasm run", function()
    local rng, all = gen.rng(1, 1), {}
    for _, t in ipairs(isa.templates()) do
      for _, size in ipairs(t.sizes) do all[#all + 1] = gen.instantiate(rng, t, size) end
    end
    asm.assemble(all)
    for _, inst in ipairs(all) do assert.is_true(#inst.bytes > 0, inst.text) end
    assert.is_true(#all > 800)
  end)

  it("never generates an instruction that reads a flag an earlier one left undefined", function()
    for i = 1, 300 do
      local c = gen.case(5, i)
      assert.is_true(gen.valid(c.seq), texts(c))
    end
    local mul = gen.instantiate(gen.rng(1, 2), isa.find("mul r64"), 64)
    local adc = gen.instantiate(gen.rng(1, 2), isa.find("adc r64,r64"), 64)
    local setcc = gen.literal("setz al")
    setcc.reads = isa.flags("Z")
    assert.is_true(gen.valid { adc, mul })               -- mul leaves CF defined
    assert.is_false(gen.valid { mul, setcc })            -- ... and ZF undefined
    assert.equals(isa.flags("PAZS"), (gen.undefined { mul }))
  end)

  it("knows which flags a shift defines, by its count (SDM)", function()
    local function effect(form, size, count)
      local t = isa.find(form)
      local inst = gen.effects { t = t, size = size, count = count, form = form }
      return inst.w, inst.u
    end
    assert.same({ 0, 0 }, { effect("shl r32,i8", 32, 32) })                      -- masked count 0: nothing
    assert.same({ isa.flags("PZSCO"), isa.flags("A") }, { effect("shl r32,i8", 32, 1) })
    assert.same({ isa.flags("PZSC"), isa.flags("AO") }, { effect("shl r32,i8", 32, 5) })
    assert.same({ isa.flags("PZS"), isa.flags("ACO") }, { effect("shr r8,i8", 8, 9) })   -- CF undefined past the size
    assert.same({ 0, isa.flags("CO") }, { effect("rcl r8,i8", 8, 9) })               -- rotates by 9 mod 9
  end)

  it("masks undefined flags and says how floating-point values differ", function()
    local init = state.quiet()
    local a, b = result(init), result(init)
    b.regs.rflags = a.regs.rflags | 0x10 | 0x800                 -- AF and OF
    assert.same({ "AF", "OF" }, (compare.diff(a, b, {})))
    assert.same({ "OF" }, (compare.diff(a, b, { rflags = 0x10 })))
    assert.same({}, (compare.diff(a, b, { rflags = 0x810 })))
    b = result(init)
    b.fpu = { fcw = 0x37f, fsw = 0, ftw = 0, mxcsr = 0x1f80, st = init.fpu.st, xmm = {} }
    for i = 1, 16 do b.fpu.xmm[i] = init.fpu.xmm[i] end
    b.fpu.xmm[1] = string.pack("<i8i8", 1, 0)                   -- a denormal where a has zero
    assert.same({ "xmm.denormal" }, (compare.diff(a, b, { form = "mulsd x,x" })))
    assert.same({ "xmm" }, (compare.diff(a, b, { form = "paddq x,x" })))
    a.fpu.xmm = {}
    for i = 1, 16 do a.fpu.xmm[i] = init.fpu.xmm[i] end
    a.fpu.xmm[1] = string.pack("<i8i8", 0x7ff8000000000000, 0)
    b.fpu.xmm[1] = string.pack("<i8i8", 0x7ff4000000000000, 0)
    assert.same({ "xmm.nan" }, (compare.diff(a, b, { form = "addpd x,x" })))
    assert.equals("fldpi [pc24,rc]", "fldpi" .. compare.tag("fldpi", { fcw = 0x47f, mxcsr = 0x1f80 }))
    assert.equals("addps x,x [ftz]", "addps x,x" .. compare.tag("addps x,x", { fcw = 0x37f, mxcsr = 0x9f80 }))
    assert.equals("", compare.tag("movaps x,x", { fcw = 0x37f, mxcsr = 0x9f80 }))
    -- the mode a form runs with follows the sequence's ldmxcsr and fldcw (case 1453 of seed a0830e9:
    -- ldmxcsr of 0xbfd2, then divss; the FTZ it set made the form's class "divss x,x [ftz,daz]")
    local seq = { { form = "ldmxcsr m32", text = "mov dword dword [r15 - 0x160], 0xbfd2\nldmxcsr dword [r15 - 0x160]" },
                  { form = "fldcw m16", text = "mov word word [r15], 0x47f\nfldcw word [r15]" },
                  { form = "divss x,x", text = "divss xmm4, xmm14" } }
    local init_fpu = { fcw = 0x37f, mxcsr = 0x1f80 }
    assert.same({ fcw = 0x37f, mxcsr = 0x1f80 }, compare.fp_mode(init_fpu, seq, 1))
    assert.same({ fcw = 0x37f, mxcsr = 0xbfd2 }, compare.fp_mode(init_fpu, seq, 2))
    assert.same({ fcw = 0x47f, mxcsr = 0xbfd2 }, compare.fp_mode(init_fpu, seq, 3))
    assert.equals(" [ftz,daz]", compare.tag("divss x,x", compare.fp_mode(init_fpu, seq, 3)))
  end)

  it("finds the instruction that introduces a difference and minimises the case to it", function()
    local c = gen.case(9, 1)
    while #c.seq < 8 do c = gen.case(9, c.index + 1) end
    local culprit = gen.literal("mov rax, 0x1122334455667788")   -- bytes found nowhere else
    c.seq[6] = culprit
    asm.assemble(c.seq)
    -- two fake backends that agree, except that the other's rax is off by
    -- one whenever the culprit's bytes are in the code
    local ref = { backend = "fake-ref", run = function(_, _, init) return result(init) end }
    local other = { backend = "fake-other", run = function(_, code, init)
      local r = result(init)
      if code:find(culprit.bytes, 1, true) then r.regs.rax = r.regs.rax + 1 end
      return r
    end }
    local out = tester.new(ref, other):case(c)
    assert.is_nil(out.failure)
    assert.equals(1, #out.classes)
    local class = out.classes[1]
    assert.equals(culprit.form .. compare.tag(culprit.form, c.init.fpu) .. ": gpr", class.key)
    assert.equals(6, class.prefix)
    assert.is_true(class.minimised)
    -- every instruction before the culprit that gen.valid lets go is gone
    assert.equals(culprit, class.seq[#class.seq])
    assert.is_true(#class.seq < 6)
  end)

  it("reports a backend that fails as a tester failure, not as agreement", function()
    local c = gen.case(9, 2)
    asm.assemble(c.seq)
    local ref = { backend = "fake-ref", run = function(_, _, init) return result(init) end }
    local other = { backend = "fake-other", run = function() return nil, "hang: no exit within 5000 ms" end }
    local out = tester.new(ref, other):case(c)
    assert.matches("fake%-other: hang", out.failure)
  end)

  it("reads rcx, r11 and rflags as the instructions left them, from the epilogue's save slots", function()
    local m = machine.new(H.backend)
    local seq = { gen.literal("mov rcx, 5"), gen.literal("mov r11, 7"), gen.literal("stc") }
    asm.assemble(seq)
    local r = assert(m:run(machine.code(seq), state.quiet()))
    m:close()
    assert.is_true(r.closing)
    assert.equals(5, r.regs.rcx)
    assert.equals(7, r.regs.r11)
    assert.equals(state.RFLAGS_FIXED | 1, r.regs.rflags)
  end)

  it("finds no difference between a backend and itself", function()
    local res = conformance.run { seed = 11, cases = 40, ref = H.backend, other = H.backend }
    assert.same({}, res.failures)
    assert.equals(0, res.mismatching)
    assert.equals(40, res.ran)
  end)

  it("has a well-formed table of documented deviations, whose reproducers assemble", function()
    local entries = known.load(KNOWN)
    assert.is_true(#entries > 10)
    for _, e in ipairs(entries) do
      if not e.reproducer.harness then
        local c = known.case(e)
        assert.is_true(#c.seq > 0, e.id)
        -- the reproducer's own class belongs to its entry
        local class = { form = e.reproducer.form .. compare.tag(e.reproducer.form, c.init.fpu), items = { e.items[1] } }
        assert.equals(e.id, known.match({ e }, class) and e.id, e.id)
      end
    end
  end)

  it("gives a class to an entry marked later when its sequence holds one of the entry's forms", function()
    local entries = known.load(KNOWN)
    local by_id = {}
    for _, e in ipairs(entries) do by_id[e.id] = e end
    assert.is_true(by_id["ref-cmpxchg8b-flags"].later)
    local function class(forms, items)
      local seq = {}
      for i, f in ipairs(forms) do seq[i] = { form = f } end
      return { form = forms[#forms], items = items, seq = seq }
    end
    local function id(c) local e = known.match(entries, c) return e and e.id end
    -- garbage flags from a cmpxchg16b seen at the ud2 after it
    assert.equals("ref-cmpxchg8b-flags", id(class({ "cmpxchg16b m128", "ud2" }, { "AC", "RF", "rflags" })))
    -- ... through an aggregated class's example too
    local agg = { form = "ud2", items = { "AC", "RF" }, example = class({ "cmpxchg8b m64", "push m64", "ud2" }, {}) }
    assert.equals("ref-cmpxchg8b-flags", id(agg))
    -- without one, the ud2's AC is new
    assert.equals(nil, id(class({ "shr r64,1", "ud2" }, { "AC", "RF", "rflags" })))
    -- a direct match comes first: RF alone at a ud2 is exception-rf's, cmpxchg16b or not
    assert.equals("exception-rf", id(class({ "cmpxchg16b m128", "ud2" }, { "RF" })))
    -- items the entry does not cover stay new
    assert.equals(nil, id(class({ "cmpxchg16b m128", "ud2" }, { "RF", "xmm" })))
    -- an entry without later claims only its own form: RF at a shr after a ud2 is new
    assert.is_nil(by_id["exception-rf"].later)
    assert.is_nil(id(class({ "ud2", "shr r64,1" }, { "RF" })))
  end)
end)

describe("conformance of soft against kvm #kvm", function()
  local entries = known.select(known.load(KNOWN), known.kind("kvm"))

  it("reproduces every documented deviation", function()
    local ref, other, t = conformance.machines { ref = "kvm", other = "soft" }
    local problems = {}
    for _, e in ipairs(entries) do
      local class, err = known.reproduce(t, e)
      if err then problems[#problems + 1] = e.id .. ": " .. err
      elseif not class then problems[#problems + 1] = e.id .. ": the backends agree (remove the entry)"
      elseif not known.match({ e }, class) then problems[#problems + 1] = e.id .. ": gives " .. class.key end
    end
    ref:close()
    other:close()
    assert.same({}, problems)
  end)

  it("finds no undocumented difference in a random run", function()
    local cases = tonumber(os.getenv("MOONVISOR_CONFORMANCE_CASES") or 300)
    local seed = os.getenv("MOONVISOR_CONFORMANCE_SEED") or 1
    local res = conformance.run { seed = seed, cases = cases, minimise = "new", known = entries }
    local new = {}
    for _, class in ipairs(res.known.new) do
      new[#new + 1] = ("%s (replay: build/moonvisor bench/conformance.lua --seed %s --case %d)"):format(class.key,
        tostring(seed), class.example_index or class.first)
    end
    assert.same({}, res.failures)
    assert.same({}, new)
    assert.equals(cases, res.ran)
  end)
end)
