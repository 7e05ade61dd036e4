/*
 * soft_cpu.c - the software backend's CPU state: general registers in each
 * mode, special registers and the switch between real, protected and long
 * mode (Unicorn fixes a register width per engine, so a mode change opens a
 * new engine).  Walks of the guest's page tables: soft_paging.c.
 *
 * Segment registers: Unicorn loads a selector's hidden part from the GDT in
 * guest memory, as the CPU does, so in protected and long mode the bases and
 * limits given to write_sregs must match the GDT (x86.lua writes both).
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include "soft.h"

#define CR0_PE 1u
#define CR0_PG UINT64_C(0x80000000)
#define EFER_MSR 0xc0000080u
#define EFER_LMA 0x400u

static const int gpr32[8] = { UC_X86_REG_EAX, UC_X86_REG_EBX, UC_X86_REG_ECX, UC_X86_REG_EDX,
                              UC_X86_REG_ESI, UC_X86_REG_EDI, UC_X86_REG_EBP, UC_X86_REG_ESP };
static const int gpr64[16] = { UC_X86_REG_RAX, UC_X86_REG_RBX, UC_X86_REG_RCX, UC_X86_REG_RDX,
                               UC_X86_REG_RSI, UC_X86_REG_RDI, UC_X86_REG_RBP, UC_X86_REG_RSP,
                               UC_X86_REG_R8, UC_X86_REG_R9, UC_X86_REG_R10, UC_X86_REG_R11,
                               UC_X86_REG_R12, UC_X86_REG_R13, UC_X86_REG_R14, UC_X86_REG_R15 };
static const char *const reg_names[18] = { "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
                                           "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags" };

static uint64_t *reg_slot(mv_regs *r, int i) {
  uint64_t *slots[18] = { &r->rax, &r->rbx, &r->rcx, &r->rdx, &r->rsi, &r->rdi, &r->rbp, &r->rsp,
                          &r->r8, &r->r9, &r->r10, &r->r11, &r->r12, &r->r13, &r->r14, &r->r15,
                          &r->rip, &r->rflags };
  return slots[i];
}

/* {====================================================== general registers */

int soft_get_regs(mv_vcpu *c, mv_regs *r, mv_err *err) {
  (void)err;
  soft_vcpu *sv = SV(c);
  memset(r, 0, sizeof *r);
  bool wide = sv->mode == UC_MODE_64;
  for (int i = 0; i < (wide ? 16 : 8); i++)
    *reg_slot(r, i) = wide ? reg(sv->uc, gpr64[i]) : reg(sv->uc, gpr32[i]) & 0xffffffff;
  r->rip = wide ? reg(sv->uc, UC_X86_REG_RIP) : reg(sv->uc, UC_X86_REG_EIP) & 0xffffffff;
  r->rflags = reg(sv->uc, UC_X86_REG_EFLAGS) & 0xffffffff;
  return 0;
}

int soft_set_regs(mv_vcpu *c, const mv_regs *in, mv_err *err) {
  soft_vcpu *sv = SV(c);
  mv_regs r = *in;
  bool wide = sv->mode == UC_MODE_64;
  for (int i = 0; i < 18; i++) {   /* refuse before writing anything: no silent truncation */
    uint64_t v = *reg_slot(&r, i);
    if (!wide && i >= 8 && i < 16 && v)
      return mv__fail(err, -ENOTSUP, "vcpu:write_state: %s does not exist outside long mode (soft backend)", reg_names[i]);
    if (!wide && v > UINT32_MAX)
      return mv__fail(err, -ERANGE, "vcpu:write_state: %s = 0x%" PRIx64 " does not fit the 32-bit registers of %s mode (soft backend)",
                      reg_names[i], v, sv->mode == UC_MODE_16 ? "real" : "protected");
  }
  for (int i = 0; i < (wide ? 16 : 8); i++) {
    uc_err e = set_reg(sv->uc, wide ? gpr64[i] : gpr32[i], *reg_slot(&r, i));
    if (e) return soft_fail(err, "vcpu:write_state", e);
  }
  set_reg(sv->uc, wide ? UC_X86_REG_RIP : UC_X86_REG_EIP, r.rip);
  set_reg(sv->uc, UC_X86_REG_EFLAGS, r.rflags | 2);
  return 0;
}

uint64_t soft_start_address(soft_vcpu *sv) {
  if (sv->mode == UC_MODE_16)
    return ((reg(sv->uc, UC_X86_REG_CS) & 0xffff) << 4) + (reg(sv->uc, UC_X86_REG_EIP) & 0xffff);
  return sv->mode == UC_MODE_64 ? reg(sv->uc, UC_X86_REG_RIP) : reg(sv->uc, UC_X86_REG_EIP) & 0xffffffff;
}

/* {====================================================== MSRs */

int soft_get_msr(mv_vcpu *c, uint32_t index, uint64_t *value, mv_err *err) {
  uc_x86_msr m = { .rid = index };
  uc_err e = uc_reg_read(SV(c)->uc, UC_X86_REG_MSR, &m);
  if (e) return mv__fail(err, -EINVAL, "vcpu:msr: MSR 0x%" PRIx32 " cannot be read (unicorn: %s)", index, uc_strerror(e));
  *value = m.value;
  return 0;
}

int soft_set_msr(mv_vcpu *c, uint32_t index, uint64_t value, mv_err *err) {
  uc_x86_msr m = { .rid = index, .value = value };
  uc_err e = uc_reg_write(SV(c)->uc, UC_X86_REG_MSR, &m);
  if (e) return mv__fail(err, -EINVAL, "vcpu:msr: MSR 0x%" PRIx32 " = 0x%" PRIx64 " refused (unicorn: %s)", index, value,
                         uc_strerror(e));
  return 0;
}

/* {====================================================== FPU */

/* Unicorn numbers x87 registers physically; ST(i) is FP[(TOP + i) % 8]. */
int soft_get_fpu(mv_vcpu *c, mv_fpu *o, mv_err *err) {
  (void)err;
  uc_engine *uc = SV(c)->uc;
  memset(o, 0, sizeof *o);
  o->fcw = (uint16_t)reg(uc, UC_X86_REG_FPCW);
  o->fsw = (uint16_t)reg(uc, UC_X86_REG_FPSW);
  o->mxcsr = (uint32_t)reg(uc, UC_X86_REG_MXCSR);
  unsigned top = (o->fsw >> 11) & 7, tags = (unsigned)reg(uc, UC_X86_REG_FPTAG);
  for (unsigned i = 0; i < 8; i++) {
    uint8_t buf[16] = { 0 };
    unsigned phys = (top + i) & 7;
    uc_reg_read(uc, UC_X86_REG_FP0 + (int)phys, buf);
    memcpy(o->st[i], buf, 10);
    if (((tags >> (2 * phys)) & 3) != 3) o->ftw |= (uint8_t)(1u << phys);   /* abridged: not empty */
  }
  for (int i = 0; i < (SV(c)->mode == UC_MODE_64 ? 16 : 8); i++) {
    uint8_t buf[16] = { 0 };
    uc_reg_read(uc, UC_X86_REG_XMM0 + i, buf);
    memcpy(o->xmm[i], buf, 16);
  }
  return 0;
}

int soft_set_fpu(mv_vcpu *c, const mv_fpu *in, mv_err *err) {
  uc_engine *uc = SV(c)->uc;
  unsigned top = (in->fsw >> 11) & 7, tags = 0;
  for (unsigned i = 0; i < 8; i++) {
    uint8_t buf[16] = { 0 };
    unsigned phys = (top + i) & 7;
    memcpy(buf, in->st[i], 10);
    uc_reg_write(uc, UC_X86_REG_FP0 + (int)phys, buf);
  }
  for (unsigned p = 0; p < 8; p++) tags |= (in->ftw >> p & 1 ? 0u : 3u) << (2 * p);   /* valid or empty */
  uc_err e;
  if ((e = set_reg(uc, UC_X86_REG_FPCW, in->fcw)) || (e = set_reg(uc, UC_X86_REG_FPSW, in->fsw)) ||
      (e = set_reg(uc, UC_X86_REG_FPTAG, tags)) || (e = set_reg(uc, UC_X86_REG_MXCSR, in->mxcsr)))
    return soft_fail(err, "vcpu:write_fpu", e);
  for (int i = 0; i < (SV(c)->mode == UC_MODE_64 ? 16 : 8); i++) {
    uint8_t buf[16];
    memcpy(buf, in->xmm[i], 16);
    uc_reg_write(uc, UC_X86_REG_XMM0 + i, buf);
  }
  return 0;
}

/* {====================================================== special registers */

static const int seg_ids[6] = { UC_X86_REG_CS, UC_X86_REG_DS, UC_X86_REG_ES,
                                UC_X86_REG_FS, UC_X86_REG_GS, UC_X86_REG_SS };

static uint64_t read_efer(uc_engine *uc) {
  uc_x86_msr m = { .rid = EFER_MSR };
  uc_reg_read(uc, UC_X86_REG_MSR, &m);
  return m.value;
}

/* The hidden part of a selector, from its descriptor in the guest's GDT. */
static mv_segment describe(mv_vcpu *c, uint16_t sel, uint64_t gdt_base) {
  mv_segment s = { .selector = sel };
  uint64_t d = 0, pa;
  if ((sel & ~7u) == 0 || !soft_translate(c, gdt_base + (sel & ~7u), &pa) ||
      mv_guest_read(c->guest, pa, &d, 8, NULL) != 0) {
    s.unusable = sel == 0;
    return s;
  }
  s.limit = (uint32_t)((d & 0xffff) | ((d >> 32) & 0xf0000));
  s.base = ((d >> 16) & 0xffffff) | (((d >> 56) & 0xff) << 24);
  s.type = (d >> 40) & 0xf;
  s.s = (d >> 44) & 1;
  s.dpl = (d >> 45) & 3;
  s.present = (d >> 47) & 1;
  s.avl = (d >> 52) & 1;
  s.l = (d >> 53) & 1;
  s.db = (d >> 54) & 1;
  s.g = (d >> 55) & 1;
  if (s.g) s.limit = (s.limit << 12) | 0xfff;
  return s;
}

int soft_get_sregs(mv_vcpu *c, mv_sregs *s, mv_err *err) {
  (void)err;
  soft_vcpu *sv = SV(c);
  uc_engine *uc = sv->uc;
  memset(s, 0, sizeof *s);
  uc_x86_mmr gdtr = { 0 }, idtr = { 0 }, tr = { 0 }, ldtr = { 0 };
  uc_reg_read(uc, UC_X86_REG_GDTR, &gdtr);
  uc_reg_read(uc, UC_X86_REG_IDTR, &idtr);
  uc_reg_read(uc, UC_X86_REG_TR, &tr);
  uc_reg_read(uc, UC_X86_REG_LDTR, &ldtr);
  s->gdt = (mv_dtable){ gdtr.base, (uint16_t)gdtr.limit };
  s->idt = (mv_dtable){ idtr.base, (uint16_t)idtr.limit };
  s->cr0 = reg(uc, UC_X86_REG_CR0) & 0xffffffff;
  s->cr2 = reg(uc, UC_X86_REG_CR2);
  s->cr3 = reg(uc, UC_X86_REG_CR3);
  s->cr4 = reg(uc, UC_X86_REG_CR4) & 0xffffffff;
  s->cr8 = reg(uc, UC_X86_REG_CR8);
  s->efer = read_efer(uc);
  s->apic_base = UINT64_C(0xfee00900);
  mv_segment *segs[6] = { &s->cs, &s->ds, &s->es, &s->fs, &s->gs, &s->ss };
  for (int i = 0; i < 6; i++) {
    uint16_t sel = (uint16_t)reg(uc, seg_ids[i]);
    if (!(s->cr0 & CR0_PE))   /* real mode: the hidden part follows the selector */
      *segs[i] = (mv_segment){ .base = (uint64_t)sel << 4, .limit = 0xffff, .selector = sel,
                               .type = i == 0 ? 11 : 3, .present = 1, .s = 1 };
    else
      *segs[i] = describe(c, sel, gdtr.base);
  }
  s->tr = (mv_segment){ .base = tr.base, .limit = tr.limit, .selector = (uint16_t)tr.selector,
                        .type = 11, .present = 1 };
  s->ldt = (mv_segment){ .base = ldtr.base, .limit = ldtr.limit, .selector = (uint16_t)ldtr.selector,
                         .type = 2, .present = 1, .unusable = ldtr.selector == 0 };
  return 0;
}

static uc_mode mode_of(const mv_sregs *s) {
  if (!(s->cr0 & CR0_PE)) return UC_MODE_16;
  bool long_mode = (s->efer & EFER_LMA) || ((s->efer & 0x100) && (s->cr0 & CR0_PG));
  return long_mode ? UC_MODE_64 : UC_MODE_32;
}

/* Opens an engine of another mode, carrying the general registers and the
 * x87/SSE state over (a mode switch keeps them on a CPU). */
static int switch_mode(mv_vcpu *c, uc_mode mode, mv_err *err) {
  mv_regs r;
  mv_fpu f;
  soft_get_regs(c, &r, err);
  soft_get_fpu(c, &f, err);
  soft_engine_close(c);
  int e = soft_engine_open(c, mode, err);
  if (e < 0) return e;
  if (mode != UC_MODE_64) {   /* narrowing: keep the low halves */
    for (int i = 0; i < 18; i++) *reg_slot(&r, i) = i >= 8 && i < 16 ? 0 : *reg_slot(&r, i) & 0xffffffff;
  }
  e = soft_set_regs(c, &r, err);
  return e < 0 ? e : soft_set_fpu(c, &f, err);
}

/* The flags of a segment cache (descriptor bits 8-23), as QEMU keeps them. */
static uint32_t cache_flags(const mv_segment *d) {
  if (!(d->selector & ~7u)) return 0;
  return (uint32_t)d->type << 8 | (uint32_t)d->s << 12 | (uint32_t)d->dpl << 13 | (uint32_t)d->present << 15 |
         (uint32_t)d->avl << 20 | (uint32_t)d->l << 21 | (uint32_t)d->db << 22 | (uint32_t)d->g << 23;
}

/* Unicorn's 64-bit engine sets a segment register's selector alone: the
 * hidden parts of CS and SS it runs with, and the CPL (QEMU's is SS's
 * DPL), come from their descriptors in the GDT here, as a CPU would load
 * them (DS, ES, FS and GS attributes play no part in 64-bit mode). */
static int load_long_mode_segments(mv_vcpu *c, const mv_sregs *s, mv_err *err) {
  mv_segment cs = describe(c, s->cs.selector, s->gdt.base), ss = describe(c, s->ss.selector, s->gdt.base);
  unsigned cpl = ss.selector & ~7u ? ss.dpl : s->cs.selector & 3u;
  if (!soft_env_set_cpl(c, cpl, cache_flags(&cs), cache_flags(&ss)) && cpl != 0)
    return mv__fail(err, -ENOTSUP, "vcpu:write_sregs: CPL %u cannot be set on this libunicorn (soft backend)", cpl);
  return 0;
}

int soft_set_sregs(mv_vcpu *c, const mv_sregs *s, mv_err *err) {
  uc_mode mode = mode_of(s);
  const mv_segment *segs[6] = { &s->cs, &s->ds, &s->es, &s->fs, &s->gs, &s->ss };
  static const char *const names[6] = { "cs", "ds", "es", "fs", "gs", "ss" };
  if (mode == UC_MODE_16)
    for (int i = 0; i < 6; i++)
      if (segs[i]->base != (uint64_t)segs[i]->selector << 4)
        return mv__fail(err, -ENOTSUP, "vcpu:write_sregs: %s base 0x%" PRIx64 " is not selector*16 (soft backend, real mode)",
                        names[i], segs[i]->base);
  if (mode != SV(c)->mode) {
    int r = switch_mode(c, mode, err);
    if (r < 0) return r;
  }
  uc_engine *uc = SV(c)->uc;
  uc_x86_mmr gdtr = { .base = s->gdt.base, .limit = s->gdt.limit }, idtr = { .base = s->idt.base, .limit = s->idt.limit };
  /* QEMU keeps a TSS "available" in its cache (the I/O permission check wants type 9) */
  unsigned tr_type = s->tr.type == 11 || s->tr.type == 3 ? s->tr.type - 2u : s->tr.type;
  uc_x86_mmr tr = { .selector = s->tr.selector, .base = s->tr.base, .limit = s->tr.limit,
                    .flags = tr_type << 8 | (unsigned)s->tr.present << 15 | (unsigned)s->tr.g << 23 };
  uc_reg_write(uc, UC_X86_REG_GDTR, &gdtr);
  uc_reg_write(uc, UC_X86_REG_IDTR, &idtr);
  uc_x86_msr efer = { .rid = EFER_MSR, .value = s->efer };
  uc_err e;
  if ((e = set_reg(uc, UC_X86_REG_CR4, s->cr4)) || (e = set_reg(uc, UC_X86_REG_CR3, s->cr3)) ||
      (e = uc_reg_write(uc, UC_X86_REG_MSR, &efer)) || (e = set_reg(uc, UC_X86_REG_CR0, s->cr0)) ||
      (e = set_reg(uc, UC_X86_REG_CR2, s->cr2)))
    return soft_fail(err, "vcpu:write_sregs", e);
  if (mode != UC_MODE_16) uc_reg_write(uc, UC_X86_REG_TR, &tr);
  for (int i = 0; i < 6; i++) {
    e = set_reg(uc, seg_ids[i], segs[i]->selector);   /* protected mode: loads the GDT descriptor */
    if (e) return mv__fail(err, -EINVAL, "vcpu:write_sregs: %s selector 0x%x: unicorn: %s (is its GDT descriptor valid?)",
                           names[i], segs[i]->selector, uc_strerror(e));
  }
  return mode == UC_MODE_64 ? load_long_mode_segments(c, s, err) : 0;
}
