/*
 * soft.c - the software backend: each VCPU is a Unicorn engine sharing the
 * guest's host memory.  For hosts without /dev/kvm and for specs that must
 * run anywhere.  IO and MMIO reach mv__access through Unicorn hooks;
 * unmapped guest-physical pages become MMIO pages on first touch so every
 * access completes as it would under KVM (unclaimed reads see all-ones).
 *
 * Differences from KVM, documented in README.md: CPU exceptions and
 * software interrupts are not delivered through the guest's IDT but end the
 * run with an "exception" exit (so there is no triple-fault "shutdown");
 * queued interrupts are injected in real mode only; there is no in-kernel
 * irqchip; 8-byte MMIO accesses arrive as two 4-byte ones (Unicorn's MMIO
 * regions are at most 4 bytes wide).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unicorn/unicorn.h>
#include "internal.h"

typedef struct mmio_page_cb {
  mv_vcpu *cpu;
  uint64_t base;
  struct mmio_page_cb *next;
} mmio_page_cb;

typedef struct soft_vcpu {
  uc_engine *uc;
  volatile sig_atomic_t stop_requested;   /* set by callbacks, honoured before the next instruction */
  bool exit_set;                           /* *cpu->exit already describes why we stopped */
  uint64_t pc;                             /* linear address of the instruction last started */
  mmio_page_cb *mmio;                      /* user data of MMIO pages mapped on first touch */
  uint64_t ro_addr;                        /* a write to read-only memory waiting to be discarded */
  uint8_t ro_saved[16];
  int ro_size;
} soft_vcpu;

typedef struct soft_guest {
  uint64_t *dirty[64];   /* per backend slot: guest writes to LOG_DIRTY mappings */
} soft_guest;

static soft_vcpu *SV(mv_vcpu *c) { return c->be_state; }

static int uc_fail(mv_err *err, const char *what, uc_err e) {
  return mv__fail(err, -EIO, "%s: unicorn: %s", what, uc_strerror(e));
}

/* Unicorn writes as many bytes as it likes (up to 8) into a register read's
 * buffer, whatever the register's width: always go through a uint64_t. */
static uint64_t reg(uc_engine *uc, int id) {
  uint64_t v = 0;
  uc_reg_read(uc, id, &v);
  return v;
}

static uc_err set_reg(uc_engine *uc, int id, uint64_t v) { return uc_reg_write(uc, id, &v); }

/* {====================================================== guest */

static int soft_guest_create(mv_guest *g, const mv_guest_opts *opts, mv_err *err) {
  if (opts->irqchip)
    return mv__fail(err, -ENOTSUP, "guest: irqchip = true needs the kvm backend");
  g->be_state = calloc(1, sizeof(soft_guest));
  return g->be_state ? 0 : mv__fail(err, -ENOMEM, "guest: out of memory");
}

static void soft_guest_destroy(mv_guest *g) {
  soft_guest *sg = g->be_state;
  if (!sg) return;
  for (int i = 0; i < 64; i++) free(sg->dirty[i]);
  free(sg);
  g->be_state = NULL;
}

static void dirty_hook(uc_engine *uc, uc_mem_type type, uint64_t addr, int size, int64_t value, void *user) {
  (void)uc; (void)type; (void)value;
  mv_vcpu *c = user;
  const mv_mapping *m = mv__guest_find_mapping(c->guest, addr);
  soft_guest *sg = c->guest->be_state;
  if (!m || !(m->flags & MV_MAP_LOG_DIRTY) || !sg->dirty[m->slot]) return;
  for (uint64_t p = (addr - m->gpa) / MV_PAGE_SIZE; p <= (addr + (uint64_t)size - 1 - m->gpa) / MV_PAGE_SIZE
       && p < m->size / MV_PAGE_SIZE; p++)
    sg->dirty[m->slot][p / 64] |= UINT64_C(1) << (p % 64);
}

/* Drops any MMIO pages we created in [gpa, gpa+size) so RAM can go there. */
static void unmap_mmio_pages(mv_vcpu *c, uint64_t gpa, uint64_t size) {
  soft_vcpu *sv = SV(c);
  for (mmio_page_cb **pp = &sv->mmio; *pp;) {
    mmio_page_cb *p = *pp;
    if (p->base >= gpa && p->base < gpa + size) {
      uc_mem_unmap(sv->uc, p->base, MV_PAGE_SIZE);
      *pp = p->next;
      free(p);
    } else {
      pp = &p->next;
    }
  }
}

static int map_into(mv_vcpu *c, const mv_mapping *m, mv_err *err) {
  unmap_mmio_pages(c, m->gpa, m->size);
  uint32_t prot = UC_PROT_READ | UC_PROT_EXEC | (m->flags & MV_MAP_READONLY ? 0 : UC_PROT_WRITE);
  uc_err e = uc_mem_map_ptr(SV(c)->uc, m->gpa, m->size, prot, m->vmo->mem + m->offset);
  return e ? uc_fail(err, "guest:map", e) : 0;
}

static int soft_map(mv_guest *g, const mv_mapping *m, mv_err *err) {
  soft_guest *sg = g->be_state;
  if (m->flags & MV_MAP_LOG_DIRTY) {
    free(sg->dirty[m->slot]);
    sg->dirty[m->slot] = calloc((m->size / MV_PAGE_SIZE + 63) / 64, sizeof(uint64_t));
    if (!sg->dirty[m->slot]) return mv__fail(err, -ENOMEM, "guest:map: out of memory");
  }
  for (int i = 0; i < g->nvcpus; i++) {
    if (!g->vcpus[i] || g->vcpus[i]->destroyed) continue;
    int r = map_into(g->vcpus[i], m, err);
    if (r < 0) return r;
  }
  return 0;
}

static int soft_unmap(mv_guest *g, const mv_mapping *m, mv_err *err) {
  for (int i = 0; i < g->nvcpus; i++) {
    if (!g->vcpus[i] || g->vcpus[i]->destroyed) continue;
    uc_err e = uc_mem_unmap(SV(g->vcpus[i])->uc, m->gpa, m->size);
    if (e) return uc_fail(err, "guest:unmap", e);
  }
  soft_guest *sg = g->be_state;
  free(sg->dirty[m->slot]);
  sg->dirty[m->slot] = NULL;
  return 0;
}

static int soft_dirty_log(mv_guest *g, const mv_mapping *m, uint64_t *bitmap, mv_err *err) {
  (void)err;
  soft_guest *sg = g->be_state;
  size_t words = (m->size / MV_PAGE_SIZE + 63) / 64;
  for (size_t i = 0; i < words; i++) {
    bitmap[i] |= sg->dirty[m->slot][i];
    sg->dirty[m->slot][i] = 0;
  }
  return 0;
}

/* {====================================================== accesses */

static void request_stop(soft_vcpu *sv) {
  sv->stop_requested = 1;
  sv->exit_set = true;
}

/* Every instruction passes here first: it is where stops take effect, so an
 * access that must return to the caller completes its instruction first. */
static void code_hook(uc_engine *uc, uint64_t addr, uint32_t size, void *user) {
  mv_vcpu *c = user;
  soft_vcpu *sv = SV(c);
  (void)size;
  if (sv->stop_requested || c->kick_pending) {
    uc_emu_stop(uc);
    return;
  }
  if (mv__has_interrupt(c) && (reg(uc, UC_X86_REG_EFLAGS) & 0x200)) {   /* stop to inject it */
    uc_emu_stop(uc);
    return;
  }
  sv->pc = addr;
}

static uint64_t guest_access(mv_vcpu *c, mv_exit_type type, uint64_t addr, unsigned size, bool write, uint64_t data) {
  soft_vcpu *sv = SV(c);
  mv_exit *e = c->exit;
  *e = (mv_exit){ .type = type, .addr = addr, .size = size, .write = write, .data = write ? data : 0 };
  uint64_t value = 0;
  if (mv__access(c, e, &value) == MV_ACCESS_STOP) request_stop(sv);
  return value;
}

static void out_hook(uc_engine *uc, uint32_t port, int size, uint32_t value, void *user) {
  (void)uc;
  guest_access(user, MV_EXIT_IO, port, (unsigned)size, true, value);
}

static uint32_t in_hook(uc_engine *uc, uint32_t port, int size, void *user) {
  (void)uc;
  return (uint32_t)guest_access(user, MV_EXIT_IO, port, (unsigned)size, false, 0);
}

static uint64_t mmio_read(uc_engine *uc, uint64_t off, unsigned size, void *user) {
  (void)uc;
  mmio_page_cb *p = user;
  return guest_access(p->cpu, MV_EXIT_MEM, p->base + off, size, false, 0);
}

static void mmio_write(uc_engine *uc, uint64_t off, unsigned size, uint64_t value, void *user) {
  (void)uc;
  mmio_page_cb *p = user;
  guest_access(p->cpu, MV_EXIT_MEM, p->base + off, size, true, value);
}

/* First touch of an unmapped page: make it an MMIO page and let Unicorn
 * retry, so the access goes through mmio_read/mmio_write like any trap. */
static bool unmapped_hook(uc_engine *uc, uc_mem_type type, uint64_t addr, int size, int64_t value, void *user) {
  (void)size; (void)value;
  mv_vcpu *c = user;
  soft_vcpu *sv = SV(c);
  if (type == UC_MEM_FETCH_UNMAPPED) return false;   /* executing from MMIO: reported by the run */
  mmio_page_cb *p = calloc(1, sizeof *p);
  if (!p) return false;
  *p = (mmio_page_cb){ .cpu = c, .base = addr & ~(uint64_t)(MV_PAGE_SIZE - 1), .next = sv->mmio };
  if (uc_mmio_map(uc, p->base, MV_PAGE_SIZE, mmio_read, p, mmio_write, p) != UC_ERR_OK) {
    free(p);
    return false;
  }
  sv->mmio = p;
  return true;
}

/* A guest write to read-only memory: let it happen, remember the old bytes
 * and put them back once the instruction is done; report it as a mem exit. */
static bool write_prot_hook(uc_engine *uc, uc_mem_type type, uint64_t addr, int size, int64_t value, void *user) {
  (void)type;
  mv_vcpu *c = user;
  soft_vcpu *sv = SV(c);
  if (size > (int)sizeof sv->ro_saved) return false;
  uc_mem_read(uc, addr, sv->ro_saved, (size_t)size);
  sv->ro_addr = addr;
  sv->ro_size = size;
  guest_access(c, MV_EXIT_MEM, addr, (unsigned)size, true, (uint64_t)value);
  return false;   /* Unicorn stops with UC_ERR_WRITE_PROT before the write */
}

/* The linear address of CS:IP (real mode). */
static uint64_t cs_ip(uc_engine *uc) {
  return ((reg(uc, UC_X86_REG_CS) & 0xffff) << 4) + (reg(uc, UC_X86_REG_EIP) & 0xffffffff);
}

static void intr_hook(uc_engine *uc, uint32_t intno, void *user) {
  mv_vcpu *c = user;
  soft_vcpu *sv = SV(c);
  if (intno == 3 && (c->debug & MV_DEBUG_SW_BREAKPOINTS)) {   /* as KVM: rip at the int3 */
    set_reg(uc, UC_X86_REG_EIP, (reg(uc, UC_X86_REG_EIP) - 1) & 0xffff);
    *c->exit = (mv_exit){ .type = MV_EXIT_DEBUG, .rip = cs_ip(uc), .detail = { 3 } };
  } else {
    *c->exit = (mv_exit){ .type = MV_EXIT_EXCEPTION, .rip = cs_ip(uc), .detail = { intno } };
  }
  request_stop(sv);
  uc_emu_stop(uc);
}

/* {====================================================== registers */

/* Unicorn in 16-bit mode exposes the 32-bit registers; that is all real mode has. */
static const int gpr_ids[] = {
  UC_X86_REG_EAX, UC_X86_REG_EBX, UC_X86_REG_ECX, UC_X86_REG_EDX, UC_X86_REG_ESI,
  UC_X86_REG_EDI, UC_X86_REG_EBP, UC_X86_REG_ESP,
};

static int soft_get_regs(mv_vcpu *c, mv_regs *r, mv_err *err) {
  (void)err;
  uc_engine *uc = SV(c)->uc;
  uint64_t *dst[8] = { &r->rax, &r->rbx, &r->rcx, &r->rdx, &r->rsi, &r->rdi, &r->rbp, &r->rsp };
  memset(r, 0, sizeof *r);
  for (int i = 0; i < 8; i++) *dst[i] = reg(uc, gpr_ids[i]) & 0xffffffff;
  r->rip = reg(uc, UC_X86_REG_EIP) & 0xffffffff;
  r->rflags = reg(uc, UC_X86_REG_EFLAGS) & 0xffffffff;
  return 0;
}

static int soft_set_regs(mv_vcpu *c, const mv_regs *r, mv_err *err) {
  uc_engine *uc = SV(c)->uc;
  const uint64_t src[8] = { r->rax, r->rbx, r->rcx, r->rdx, r->rsi, r->rdi, r->rbp, r->rsp };
  const uint64_t high[8] = { r->r8, r->r9, r->r10, r->r11, r->r12, r->r13, r->r14, r->r15 };
  static const char *const names[10] = { "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "rip", "rflags" };
  const uint64_t all[10] = { r->rax, r->rbx, r->rcx, r->rdx, r->rsi, r->rdi, r->rbp, r->rsp, r->rip, r->rflags };
  for (int i = 0; i < 8; i++)
    if (high[i]) return mv__fail(err, -ENOTSUP, "vcpu:write_state: r8-r15 do not exist in real mode (soft backend)");
  for (int i = 0; i < 10; i++)   /* refuse before writing anything: no silent truncation */
    if (all[i] > UINT32_MAX)
      return mv__fail(err, -ERANGE, "vcpu:write_state: %s = 0x%" PRIx64 " does not fit the 32-bit registers of real mode (soft backend)",
                      names[i], all[i]);
  for (int i = 0; i < 8; i++) {
    uc_err e = set_reg(uc, gpr_ids[i], src[i] & 0xffffffff);
    if (e) return uc_fail(err, "vcpu:write_state", e);
  }
  set_reg(uc, UC_X86_REG_EIP, r->rip & 0xffffffff);
  set_reg(uc, UC_X86_REG_EFLAGS, (r->rflags & 0xffffffff) | 2);
  return 0;
}

static const int seg_ids[6] = { UC_X86_REG_CS, UC_X86_REG_DS, UC_X86_REG_ES,
                                UC_X86_REG_FS, UC_X86_REG_GS, UC_X86_REG_SS };

static int soft_get_sregs(mv_vcpu *c, mv_sregs *s, mv_err *err) {
  (void)err;
  uc_engine *uc = SV(c)->uc;
  memset(s, 0, sizeof *s);
  mv_segment *segs[6] = { &s->cs, &s->ds, &s->es, &s->fs, &s->gs, &s->ss };
  for (int i = 0; i < 6; i++) {
    uint16_t sel = (uint16_t)reg(uc, seg_ids[i]);
    /* real mode: the hidden part follows the selector */
    *segs[i] = (mv_segment){ .base = (uint64_t)sel << 4, .limit = 0xffff, .selector = sel,
                             .type = i == 0 ? 11 : 3, .present = 1, .s = 1 };
  }
  uc_x86_mmr gdtr = { 0 }, idtr = { 0 };
  uc_reg_read(uc, UC_X86_REG_GDTR, &gdtr);
  uc_reg_read(uc, UC_X86_REG_IDTR, &idtr);
  s->gdt = (mv_dtable){ gdtr.base, (uint16_t)gdtr.limit };
  s->idt = (mv_dtable){ idtr.base, (uint16_t)idtr.limit };
  s->cr0 = reg(uc, UC_X86_REG_CR0) & 0xffffffff;
  s->cr2 = reg(uc, UC_X86_REG_CR2) & 0xffffffff;
  s->cr3 = reg(uc, UC_X86_REG_CR3) & 0xffffffff;
  s->cr4 = reg(uc, UC_X86_REG_CR4) & 0xffffffff;
  s->cr8 = reg(uc, UC_X86_REG_CR8);
  s->apic_base = UINT64_C(0xfee00900);
  return 0;
}

static int soft_set_sregs(mv_vcpu *c, const mv_sregs *s, mv_err *err) {
  uc_engine *uc = SV(c)->uc;
  if ((s->cr0 & 1) || s->efer)
    return mv__fail(err, -ENOTSUP, "vcpu:write_sregs: the soft backend runs real mode only (cr0.PE and efer must be 0)");
  const mv_segment *segs[6] = { &s->cs, &s->ds, &s->es, &s->fs, &s->gs, &s->ss };
  for (int i = 0; i < 6; i++) {
    if (segs[i]->base != (uint64_t)segs[i]->selector << 4)
      return mv__fail(err, -ENOTSUP, "vcpu:write_sregs: segment base 0x%" PRIx64 " is not selector*16 (soft backend, real mode)",
                      segs[i]->base);
    set_reg(uc, seg_ids[i], segs[i]->selector);
  }
  uc_x86_mmr gdtr = { .base = s->gdt.base, .limit = s->gdt.limit }, idtr = { .base = s->idt.base, .limit = s->idt.limit };
  uc_reg_write(uc, UC_X86_REG_GDTR, &gdtr);
  uc_reg_write(uc, UC_X86_REG_IDTR, &idtr);
  const int cr_ids[4] = { UC_X86_REG_CR0, UC_X86_REG_CR2, UC_X86_REG_CR3, UC_X86_REG_CR4 };
  const uint64_t cr[4] = { s->cr0, s->cr2, s->cr3, s->cr4 };
  for (int i = 0; i < 4; i++) {
    uc_err e = set_reg(uc, cr_ids[i], cr[i] & 0xffffffff);
    if (e) return uc_fail(err, "vcpu:write_sregs", e);
  }
  return 0;
}

/* {====================================================== VCPU */

static int soft_vcpu_create(mv_vcpu *c, uint64_t entry, mv_err *err) {
  soft_vcpu *sv = calloc(1, sizeof *sv);
  if (!sv) return mv__fail(err, -ENOMEM, "guest:vcpu: out of memory");
  uc_err e = uc_open(UC_ARCH_X86, UC_MODE_16, &sv->uc);
  if (e) {
    free(sv);
    return uc_fail(err, "guest:vcpu", e);
  }
  c->be_state = sv;
  uc_hook h;
  if ((e = uc_hook_add(sv->uc, &h, UC_HOOK_CODE, code_hook, c, 1, 0)) ||
      (e = uc_hook_add(sv->uc, &h, UC_HOOK_INSN, out_hook, c, 1, 0, UC_X86_INS_OUT)) ||
      (e = uc_hook_add(sv->uc, &h, UC_HOOK_INSN, in_hook, c, 1, 0, UC_X86_INS_IN)) ||
      (e = uc_hook_add(sv->uc, &h, UC_HOOK_MEM_UNMAPPED, unmapped_hook, c, 1, 0)) ||
      (e = uc_hook_add(sv->uc, &h, UC_HOOK_MEM_WRITE_PROT, write_prot_hook, c, 1, 0)) ||
      (e = uc_hook_add(sv->uc, &h, UC_HOOK_MEM_WRITE, dirty_hook, c, 1, 0)) ||
      (e = uc_hook_add(sv->uc, &h, UC_HOOK_INTR, intr_hook, c, 1, 0)))
    goto fail;
  for (size_t i = 0; i < c->guest->nmaps; i++)
    if (map_into(c, &c->guest->maps[i], err) < 0) {
      uc_close(sv->uc);
      free(sv);
      c->be_state = NULL;
      return -EIO;
    }
  mv_regs r = { .rip = entry, .rflags = 2 };
  return soft_set_regs(c, &r, err);
fail:
  uc_close(sv->uc);
  free(sv);
  c->be_state = NULL;
  return uc_fail(err, "guest:vcpu", e);
}

static void soft_vcpu_destroy(mv_vcpu *c) {
  soft_vcpu *sv = SV(c);
  if (!sv) return;
  uc_close(sv->uc);
  while (sv->mmio) {
    mmio_page_cb *next = sv->mmio->next;
    free(sv->mmio);
    sv->mmio = next;
  }
  free(sv);
  c->be_state = NULL;
}

static void soft_vcpu_kick(mv_vcpu *c) { (void)c; }   /* code_hook sees kick_pending */

static int soft_set_debug(mv_vcpu *c, unsigned flags, mv_err *err) {
  (void)c; (void)flags; (void)err;   /* soft_vcpu_run and intr_hook read cpu->debug */
  return 0;
}

/* Real-mode delivery of a queued vector through the IVT, as the CPU does it. */
static void inject_real_mode(mv_vcpu *c) {
  uc_engine *uc = SV(c)->uc;
  uint64_t eflags = reg(uc, UC_X86_REG_EFLAGS);
  if (!(eflags & 0x200) || !mv__has_interrupt(c)) return;
  uint16_t ivt[2];
  int vector = mv__take_interrupt(c);
  if (mv_guest_read(c->guest, (uint64_t)vector * 4, ivt, sizeof ivt, NULL) < 0) return;
  uint64_t esp = reg(uc, UC_X86_REG_ESP), ss = reg(uc, UC_X86_REG_SS) & 0xffff;
  uint16_t frame[3] = { (uint16_t)reg(uc, UC_X86_REG_EIP), (uint16_t)reg(uc, UC_X86_REG_CS), (uint16_t)eflags };
  uint16_t sp = (uint16_t)(esp - 6);
  if (mv_guest_write(c->guest, (ss << 4) + sp, frame, sizeof frame, NULL) < 0) return;
  set_reg(uc, UC_X86_REG_ESP, (esp & 0xffff0000u) | sp);
  set_reg(uc, UC_X86_REG_EFLAGS, eflags & ~(uint64_t)(0x200 | 0x100 | 0x40000));   /* IF, TF, AC */
  set_reg(uc, UC_X86_REG_CS, ivt[1]);
  set_reg(uc, UC_X86_REG_EIP, ivt[0]);
}

/* A guest write to read-only memory stopped Unicorn before the write: run
 * that one instruction on a writable page, then put the old bytes back. */
static uc_err discard_readonly_write(soft_vcpu *sv) {
  uint64_t page = sv->ro_addr & ~(uint64_t)(MV_PAGE_SIZE - 1);
  uc_mem_protect(sv->uc, page, MV_PAGE_SIZE, UC_PROT_ALL);
  sv->stop_requested = 0;   /* let code_hook run this one instruction */
  uc_err e = uc_emu_start(sv->uc, cs_ip(sv->uc), UINT64_MAX, 0, 1);
  uc_mem_write(sv->uc, sv->ro_addr, sv->ro_saved, (size_t)sv->ro_size);
  uc_mem_protect(sv->uc, page, MV_PAGE_SIZE, UC_PROT_READ | UC_PROT_EXEC);
  return e;
}

static int soft_vcpu_run(mv_vcpu *c, mv_err *err) {
  (void)err;
  soft_vcpu *sv = SV(c);
  for (;;) {
    inject_real_mode(c);
    sv->stop_requested = 0;
    sv->exit_set = false;
    sv->ro_size = 0;
    bool step = c->debug & MV_DEBUG_SINGLESTEP;
    sv->pc = UINT64_MAX;
    uc_err e = uc_emu_start(sv->uc, cs_ip(sv->uc), UINT64_MAX, 0, step ? 1 : 0);
    if (e == UC_ERR_WRITE_PROT && sv->ro_size && discard_readonly_write(sv) == UC_ERR_OK) return 0;
    if (sv->exit_set) return 0;
    if (c->kick_pending) {
      c->kick_pending = 0;
      *c->exit = (mv_exit){ .type = MV_EXIT_KICK };
      return 0;
    }
    mv_exit *x = c->exit;
    uint64_t pc = cs_ip(sv->uc);
    uint8_t op = 0;
    switch (e) {
    case UC_ERR_OK:   /* Unicorn stops after a hlt, or after the one step */
      if (uc_mem_read(sv->uc, sv->pc, &op, 1) == UC_ERR_OK && op == 0xf4 && pc == sv->pc + 1) {
        *x = (mv_exit){ .type = MV_EXIT_HLT, .rip = pc };
        return 0;
      }
      if (step) {
        *x = (mv_exit){ .type = MV_EXIT_DEBUG, .rip = pc, .detail = { 1 } };
        return 0;
      }
      if (mv__has_interrupt(c)) continue;
      *x = (mv_exit){ .type = MV_EXIT_UNKNOWN, .rip = pc };
      return 0;
    case UC_ERR_INSN_INVALID:
      *x = (mv_exit){ .type = MV_EXIT_EXCEPTION, .rip = pc, .reason = e, .detail = { 6 } };
      return 0;
    default:   /* fetch from unmapped or MMIO memory, and anything else Unicorn refuses */
      *x = (mv_exit){ .type = MV_EXIT_INTERNAL_ERROR, .rip = pc, .reason = e, .detail = { 1 } };
      return 0;
    }
  }
}

const mv_backend_ops mv__soft_backend = {
  .name = "soft",
  .guest_create = soft_guest_create, .guest_destroy = soft_guest_destroy,
  .map = soft_map, .unmap = soft_unmap, .dirty_log = soft_dirty_log,
  .vcpu_create = soft_vcpu_create, .vcpu_destroy = soft_vcpu_destroy,
  .vcpu_run = soft_vcpu_run, .vcpu_kick = soft_vcpu_kick, .set_debug = soft_set_debug,
  .get_regs = soft_get_regs, .set_regs = soft_set_regs,
  .get_sregs = soft_get_sregs, .set_sregs = soft_set_sregs,
};
