/*
 * soft.c - the software backend: each VCPU is a Unicorn engine sharing the
 * guest's host memory.  For hosts without /dev/kvm and for specs that must
 * run anywhere.  IO and MMIO reach mv__access through Unicorn hooks;
 * unmapped guest-physical pages become MMIO pages on first touch so every
 * access completes as it would under KVM (unclaimed reads see all-ones).
 *
 * Differences from KVM, documented in README.md: CPU exceptions (page
 * faults included) and software interrupts are not delivered through the
 * guest's IDT but end the run with an "exception" exit (so there is no
 * triple-fault "shutdown"); syscall ends the run with a "syscall" exit;
 * queued interrupts are injected in real mode only; there is no in-kernel
 * irqchip; 8-byte MMIO accesses arrive as two 4-byte ones (Unicorn's MMIO
 * regions are at most 4 bytes wide).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "soft.h"

typedef struct soft_guest {
  uint64_t *dirty[64];   /* per backend slot: guest writes to LOG_DIRTY mappings */
} soft_guest;

int soft_fail(mv_err *err, const char *what, uc_err e) {
  return mv__fail(err, -EIO, "%s: unicorn: %s", what, uc_strerror(e));
}

/* {====================================================== guest */

static int soft_guest_create(mv_guest *g, const mv_guest_opts *opts, mv_err *err) {
  int r = mv__uc_load(err);
  if (r < 0) return r;
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
  if (!m || !sg->dirty[m->slot]) return;   /* not tracked */
  for (uint64_t p = (addr - m->gpa) / MV_PAGE_SIZE; p <= (addr + (uint64_t)size - 1 - m->gpa) / MV_PAGE_SIZE
       && p < m->size / MV_PAGE_SIZE; p++)
    sg->dirty[m->slot][p / 64] |= UINT64_C(1) << (p % 64);
}

/* Unicorn drops the translations of memory it unmaps or is told to forget
 * by looking the address up through the guest's page tables: where it is
 * not mapped that walk faults silently, leaving CR2 and a page fault "in
 * flight" (the next fault would be a #DF) behind.  Puts both back. */
static void undo_silent_fault(mv_vcpu *c, uint64_t cr2) {
  soft_vcpu *sv = SV(c);
  if (reg(sv->uc, UC_X86_REG_CR2) == cr2) return;
  struct soft_env_exception x;
  set_reg(sv->uc, UC_X86_REG_CR2, cr2);
  soft_env_take_exception(c, &x);
}

/* Drops any MMIO pages we created in [gpa, gpa+size) so RAM can go there. */
static void unmap_mmio_pages(mv_vcpu *c, uint64_t gpa, uint64_t size) {
  soft_vcpu *sv = SV(c);
  for (mmio_page_cb **pp = &sv->mmio; *pp;) {
    mmio_page_cb *p = *pp;
    if (p->base >= gpa && p->base < gpa + size) {
      uint64_t cr2 = reg(sv->uc, UC_X86_REG_CR2);
      uc_mem_unmap(sv->uc, p->base, MV_PAGE_SIZE);
      undo_silent_fault(c, cr2);
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
  return e ? soft_fail(err, "guest:map", e) : 0;
}

static int soft_track(mv_guest *g, const mv_mapping *m, mv_err *err) {
  soft_guest *sg = g->be_state;
  free(sg->dirty[m->slot]);
  sg->dirty[m->slot] = calloc((m->size / MV_PAGE_SIZE + 63) / 64, sizeof(uint64_t));
  return sg->dirty[m->slot] ? 0 : mv__fail(err, -ENOMEM, "guest:map: out of memory");
}

static int soft_map(mv_guest *g, const mv_mapping *m, mv_err *err) {
  if (m->tracked) {
    int r = soft_track(g, m, err);
    if (r < 0) return r;
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
    uint64_t cr2 = reg(SV(g->vcpus[i])->uc, UC_X86_REG_CR2);
    uc_err e = uc_mem_unmap(SV(g->vcpus[i])->uc, m->gpa, m->size);
    undo_silent_fault(g->vcpus[i], cr2);
    if (e) return soft_fail(err, "guest:unmap", e);
  }
  soft_guest *sg = g->be_state;
  free(sg->dirty[m->slot]);
  sg->dirty[m->slot] = NULL;
  return 0;
}

static void mark_guest_page(mv_guest *g, uint64_t gpa) {
  soft_guest *sg = g->be_state;
  const mv_mapping *m = mv__guest_find_mapping(g, gpa);
  if (m && sg->dirty[m->slot]) {
    uint64_t p = (gpa - m->gpa) / MV_PAGE_SIZE;
    sg->dirty[m->slot][p / 64] |= UINT64_C(1) << (p % 64);
  }
}

static int soft_dirty_log(mv_guest *g, const mv_mapping *m, uint64_t *bitmap, mv_err *err) {
  (void)err;
  soft_guest *sg = g->be_state;
  for (int i = 0; i < g->nvcpus; i++)
    if (g->vcpus[i] && !g->vcpus[i]->destroyed) soft_paging_pages(g->vcpus[i], mark_guest_page);
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

static uint64_t current_rip(soft_vcpu *sv);

/* Every instruction passes here first: it is where stops take effect, so an
 * access that must return to the caller completes its instruction first. */
static void code_hook(uc_engine *uc, uint64_t addr, uint32_t size, void *user) {
  mv_vcpu *c = user;
  soft_vcpu *sv = SV(c);
  (void)size;
  if (sv->stop_requested || c->kick_pending || (sv->stepping && sv->started++ > 0)) {
    uc_emu_stop(uc);   /* Unicorn's own instruction count leaves stale translations behind */
    return;
  }
  if (c->stop_icount && c->icount + 1 >= c->stop_icount) {   /* replay: a recorded kick or timeout was here */
    c->stop_icount = 0;
    c->kick_pending = 1;
    uc_emu_stop(uc);
    return;
  }
  if (mv__has_interrupt(c) && (reg(uc, UC_X86_REG_EFLAGS) & 0x200)) {   /* stop to inject it */
    uc_emu_stop(uc);
    return;
  }
  if (soft_once_hit(sv, addr)) {   /* before the instruction, as an int3 would be */
    *c->exit = (mv_exit){ .type = MV_EXIT_DEBUG, .rip = current_rip(sv), .detail = { 3 } };
    request_stop(sv);
    uc_emu_stop(uc);
    return;
  }
  if (sv->budget_on) {   /* guest:run's quantum (smp.c): stop before the instruction past it */
    if (sv->budget == 0) {
      sv->quantum_hit = true;
      uc_emu_stop(uc);
      return;
    }
    sv->budget--;
  }
  sv->pc = addr;
  c->icount++;   /* instructions let through: what record and replay place asynchronous exits by */
}

static uint64_t soft_access_rip(mv_vcpu *c) { return SV(c)->pc; }   /* the instruction's linear address */

static uint64_t current_rip(soft_vcpu *sv) {
  return sv->mode == UC_MODE_64 ? reg(sv->uc, UC_X86_REG_RIP) : reg(sv->uc, UC_X86_REG_EIP) & 0xffffffff;
}

static uint64_t guest_access(mv_vcpu *c, mv_exit_type type, uint64_t addr, unsigned size, bool write, uint64_t data) {
  soft_vcpu *sv = SV(c);
  mv_exit *e = c->exit;
  *e = (mv_exit){ .type = type, .addr = addr, .size = size, .write = write, .data = write ? data : 0 };
  uint64_t value = 0;
  if (mv__access(c, e, type, &value) == MV_ACCESS_STOP) request_stop(sv);
  return value;
}

/* Unicorn skips the I/O permission check (CPL > IOPL: the TSS bitmap) that
 * makes a refused IN/OUT a #GP: soft_exc_io makes it. */
static void out_hook(uc_engine *uc, uint32_t port, int size, uint32_t value, void *user) {
  if (soft_exc_io(user, port, (unsigned)size)) {
    uc_emu_stop(uc);
    return;
  }
  guest_access(user, MV_EXIT_IO, port, (unsigned)size, true, value);
}

static uint32_t in_hook(uc_engine *uc, uint32_t port, int size, void *user) {
  if (soft_exc_io(user, port, (unsigned)size)) {
    uc_emu_stop(uc);
    return (uint32_t)reg(uc, UC_X86_REG_EAX);   /* put back after the run, with RCX, RSI, RDI */
  }
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
  uint64_t pa;
  if (soft_exc_access(c, type, addr, &pa)) return false;   /* #PF or #GP: the exit is set */
  if (type == UC_MEM_FETCH_UNMAPPED) return false;   /* executing from MMIO: reported by the run */
  mmio_page_cb *p = calloc(1, sizeof *p);
  if (!p) return false;
  *p = (mmio_page_cb){ .cpu = c, .base = pa & ~(uint64_t)(MV_PAGE_SIZE - 1), .next = sv->mmio };
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

static void intr_hook(uc_engine *uc, uint32_t intno, void *user) {
  mv_vcpu *c = user;
  soft_vcpu *sv = SV(c);
  if (intno == 3 && (c->debug & MV_DEBUG_SW_BREAKPOINTS)) {   /* as KVM: rip at the int3 */
    uint64_t rip = current_rip(sv) - 1;
    set_reg(uc, sv->mode == UC_MODE_64 ? UC_X86_REG_RIP : UC_X86_REG_EIP,
            sv->mode == UC_MODE_16 ? rip & 0xffff : rip);
    *c->exit = (mv_exit){ .type = MV_EXIT_DEBUG, .rip = current_rip(sv), .detail = { 3 } };
    request_stop(sv);
  } else {
    soft_exc_raised(c, intno);
  }
  uc_emu_stop(uc);
}

/* The run ends after the syscall (Unicorn moves RIP past it after this
 * hook); then, as the CPU: RCX = that RIP, R11 = RFLAGS (end_syscall). */
static void syscall_hook(uc_engine *uc, void *user) {
  mv_vcpu *c = user;
  *c->exit = (mv_exit){ .type = MV_EXIT_SYSCALL };
  request_stop(SV(c));
  uc_emu_stop(uc);
}

static void end_syscall(soft_vcpu *sv, mv_exit *x) {
  x->rip = current_rip(sv);
  set_reg(sv->uc, UC_X86_REG_RCX, x->rip);
  set_reg(sv->uc, UC_X86_REG_R11, reg(sv->uc, UC_X86_REG_RFLAGS));
}

/* {====================================================== VCPU */

int soft_engine_open(mv_vcpu *c, uc_mode mode, mv_err *err) {
  soft_vcpu *sv = SV(c);
  uc_err e = uc_open(UC_ARCH_X86, mode, &sv->uc);
  if (e) return soft_fail(err, "guest:vcpu", e);
  sv->mode = mode;
  /* Exits by address (none): without them every uc_emu_start ends by
   * dropping the translation at its `until` address, whose page walk (of
   * 0xff..fe) fails in a paged guest and leaves CR2 = -2 and a page fault
   * "in flight" behind. */
  uc_ctl_exits_enable(sv->uc);
  uc_hook h;
  if ((e = uc_hook_add(sv->uc, &h, UC_HOOK_CODE, code_hook, c, 1, 0)) ||
      (e = uc_hook_add(sv->uc, &h, UC_HOOK_INSN, out_hook, c, 1, 0, UC_X86_INS_OUT)) ||
      (e = uc_hook_add(sv->uc, &h, UC_HOOK_INSN, in_hook, c, 1, 0, UC_X86_INS_IN)) ||
      (mode == UC_MODE_64 && (e = uc_hook_add(sv->uc, &h, UC_HOOK_INSN, syscall_hook, c, 1, 0, UC_X86_INS_SYSCALL))) ||
      (e = uc_hook_add(sv->uc, &h, UC_HOOK_INSN, soft_cpuid_hook, c, 1, 0, UC_X86_INS_CPUID)) ||
      (e = uc_hook_add(sv->uc, &h, UC_HOOK_MEM_UNMAPPED, unmapped_hook, c, 1, 0)) ||
      (e = uc_hook_add(sv->uc, &h, UC_HOOK_MEM_WRITE_PROT, write_prot_hook, c, 1, 0)) ||
      (e = uc_hook_add(sv->uc, &h, UC_HOOK_MEM_WRITE, dirty_hook, c, 1, 0)) ||
      (e = uc_hook_add(sv->uc, &h, UC_HOOK_INTR, intr_hook, c, 1, 0))) {
    soft_engine_close(c);
    return soft_fail(err, "guest:vcpu", e);
  }
  /* The x87/SSE state of a CPU after reset (and of a fresh KVM VCPU), where
   * Unicorn leaves zeros: FCW 0x37f, every x87 register empty, MXCSR 0x1f80. */
  if ((e = set_reg(sv->uc, UC_X86_REG_FPCW, 0x37f)) || (e = set_reg(sv->uc, UC_X86_REG_FPTAG, 0xffff)) ||
      (e = set_reg(sv->uc, UC_X86_REG_MXCSR, 0x1f80))) {
    soft_engine_close(c);
    return soft_fail(err, "guest:vcpu", e);
  }
  for (size_t i = 0; i < c->guest->nmaps; i++) {
    int r = map_into(c, &c->guest->maps[i], err);
    if (r < 0) {
      soft_engine_close(c);
      return r;
    }
  }
  return 0;
}

void soft_engine_close(mv_vcpu *c) {
  soft_vcpu *sv = SV(c);
  soft_env_close(c);
  if (sv->uc) uc_close(sv->uc);
  sv->uc = NULL;
  while (sv->mmio) {   /* their pages went with the engine */
    mmio_page_cb *next = sv->mmio->next;
    free(sv->mmio);
    sv->mmio = next;
  }
}

static int soft_vcpu_create(mv_vcpu *c, uint64_t entry, mv_err *err) {
  soft_vcpu *sv = calloc(1, sizeof *sv);
  if (!sv) return mv__fail(err, -ENOMEM, "guest:vcpu: out of memory");
  c->be_state = sv;
  int r = soft_engine_open(c, UC_MODE_16, err);
  mv_regs regs = { .rip = entry, .rflags = 2 };
  if (r == 0) r = soft_set_regs(c, &regs, err);
  if (r < 0) {
    soft_engine_close(c);
    free(sv);
    c->be_state = NULL;
  }
  return r;
}

static void soft_vcpu_destroy(mv_vcpu *c) {
  if (!SV(c)) return;
  soft_engine_close(c);
  soft_free_once(SV(c));
  free(SV(c));
  c->be_state = NULL;
}

static void soft_vcpu_kick(mv_vcpu *c) { (void)c; }   /* code_hook sees kick_pending */

static void soft_set_budget(mv_vcpu *c, uint64_t insns) {
  SV(c)->budget = insns;
  SV(c)->budget_on = insns > 0;
}

/* The whole Unicorn CPU context.  It holds host pointers, so it is only
 * good within this process: snapshot files keep registers alone. */
static int soft_vcpu_save(mv_vcpu *c, void **blob, size_t *len, mv_err *err) {
  uc_engine *uc = SV(c)->uc;
  uc_context *ctx;
  uc_err e = uc_context_alloc(uc, &ctx);
  if (e) return soft_fail(err, "guest:snapshot", e);
  size_t n = uc_context_size(uc);
  void *copy = malloc(n);
  if (copy && (e = uc_context_save(uc, ctx)) == UC_ERR_OK) memcpy(copy, ctx, n);
  uc_context_free(ctx);
  if (!copy || e) {
    free(copy);
    return e ? soft_fail(err, "guest:snapshot", e) : mv__fail(err, -ENOMEM, "guest:snapshot: out of memory");
  }
  *blob = copy;
  *len = n;
  return 0;
}

static int soft_vcpu_load(mv_vcpu *c, const void *blob, size_t len, mv_err *err) {
  uc_engine *uc = SV(c)->uc;
  if (len != uc_context_size(uc)) return mv__fail(err, -EINVAL, "guest:restore: CPU context of another mode or build");
  uc_context *ctx;
  uc_err e = uc_context_alloc(uc, &ctx);
  if (e) return soft_fail(err, "guest:restore", e);
  memcpy(ctx, blob, len);
  e = uc_context_restore(uc, ctx);
  uc_context_free(ctx);
  return e ? soft_fail(err, "guest:restore", e) : 0;
}

static int soft_set_debug(mv_vcpu *c, unsigned flags, mv_err *err) {
  (void)c; (void)flags; (void)err;   /* soft_vcpu_run and intr_hook read cpu->debug */
  return 0;
}

/* Real-mode delivery of a queued vector through the IVT, as the CPU does it. */
static void inject_real_mode(mv_vcpu *c) {
  uc_engine *uc = SV(c)->uc;
  uint64_t eflags = reg(uc, UC_X86_REG_EFLAGS);
  if (SV(c)->mode != UC_MODE_16 || !(eflags & 0x200) || !mv__has_interrupt(c)) return;
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
  sv->stepping = true;
  sv->started = 0;
  uc_err e = uc_emu_start(sv->uc, soft_start_address(sv), UINT64_MAX, 0, 0);
  sv->stepping = false;
  uc_mem_write(sv->uc, sv->ro_addr, sv->ro_saved, (size_t)sv->ro_size);
  uc_mem_protect(sv->uc, page, MV_PAGE_SIZE, UC_PROT_READ | UC_PROT_EXEC);
  return e;
}

/* Translations of code the host has since overwritten (loaders, breakpoints,
 * restores) must go: Unicorn only sees writes made through its own API. */
static void drop_stale_code(mv_vcpu *c) {
  soft_vcpu *sv = SV(c);
  uint64_t sum = 0;
  for (size_t i = 0; i < c->guest->nmaps; i++) sum += c->guest->maps[i].vmo->host_writes;
  if (sum == sv->seen_host_writes) return;
  sv->seen_host_writes = sum;
  uint64_t cr2 = reg(sv->uc, UC_X86_REG_CR2);
  for (size_t i = 0; i < c->guest->nmaps; i++) {   /* page by page: a full flush costs Unicorn ~1 GiB */
    const mv_mapping *m = &c->guest->maps[i];
    uint64_t *bits = m->vmo->code_dirty, first = m->offset / MV_PAGE_SIZE;
    for (uint64_t p = 0; p < m->size / MV_PAGE_SIZE; p++) {
      uint64_t vp = first + p;
      if (!(bits[vp / 64] >> (vp % 64) & 1)) {
        if (bits[vp / 64] == 0) p += 63 - vp % 64;   /* skip an empty word */
        continue;
      }
      bits[vp / 64] &= ~(UINT64_C(1) << (vp % 64));
      uc_ctl_remove_cache(sv->uc, m->gpa + p * MV_PAGE_SIZE, m->gpa + (p + 1) * MV_PAGE_SIZE);
    }
  }
  undo_silent_fault(c, cr2);
}

static int soft_vcpu_run(mv_vcpu *c, mv_err *err) {
  (void)err;
  soft_vcpu *sv = SV(c);
  sv->ran = true;
  drop_stale_code(c);
  for (;;) {
    inject_real_mode(c);
    sv->stop_requested = 0;
    sv->exit_set = false;
    sv->ro_size = 0;
    bool step = c->debug & MV_DEBUG_SINGLESTEP;
    sv->pc = UINT64_MAX;
    sv->stepping = step;
    sv->started = 0;
    sv->quantum_hit = false;
    uc_err e = uc_emu_start(sv->uc, soft_start_address(sv), UINT64_MAX, 0, 0);
    sv->stepping = false;
    if (sv->exc_pending) soft_exc_after_run(c);
    if (e == UC_ERR_WRITE_PROT && sv->ro_size && discard_readonly_write(sv) == UC_ERR_OK) return 0;
    if (sv->exit_set) {
      if (c->exit->type == MV_EXIT_SYSCALL) end_syscall(sv, c->exit);
      return 0;
    }
    if (c->kick_pending) {
      c->kick_pending = 0;
      *c->exit = (mv_exit){ .type = MV_EXIT_KICK };
      return 0;
    }
    if (sv->quantum_hit) {   /* the scheduler's turn is over (smp.c) */
      sv->quantum_hit = false;
      *c->exit = (mv_exit){ .type = MV_EXIT_KICK, .reason = MV_REASON_QUANTUM, .rip = current_rip(sv) };
      return 0;
    }
    mv_exit *x = c->exit;
    uint64_t pc = current_rip(sv);
    uint8_t op = 0;
    switch (e) {
    case UC_ERR_OK:   /* Unicorn stops after a hlt, or after the one step */
      if (uc_mem_read(sv->uc, sv->pc, &op, 1) == UC_ERR_OK && op == 0xf4 && soft_start_address(sv) == sv->pc + 1) {
        *x = (mv_exit){ .type = MV_EXIT_HLT, .rip = pc };
        return 0;
      }
      if (step) {
        *x = (mv_exit){ .type = MV_EXIT_DEBUG, .rip = pc, .detail = { 1 } };
        return 0;
      }
      if (mv__has_interrupt(c) && sv->mode == UC_MODE_16) continue;
      *x = (mv_exit){ .type = MV_EXIT_UNKNOWN, .rip = pc };
      return 0;
    case UC_ERR_INSN_INVALID:
      soft_exc_invalid(c, pc);
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
  .map = soft_map, .unmap = soft_unmap, .dirty_log = soft_dirty_log, .track = soft_track,
  .vcpu_save = soft_vcpu_save, .vcpu_load = soft_vcpu_load,
  .vcpu_create = soft_vcpu_create, .vcpu_destroy = soft_vcpu_destroy,
  .vcpu_run = soft_vcpu_run, .vcpu_kick = soft_vcpu_kick, .set_debug = soft_set_debug,
  .set_once = soft_set_once, .rearm_once = soft_rearm_once,
  .get_regs = soft_get_regs, .set_regs = soft_set_regs,
  .get_sregs = soft_get_sregs, .set_sregs = soft_set_sregs,
  .get_msr = soft_get_msr, .set_msr = soft_set_msr,
  .get_fpu = soft_get_fpu, .set_fpu = soft_set_fpu, .set_cpuid = soft_set_cpuid,
  .set_budget = soft_set_budget,
  .access_rip = soft_access_rip, .counts_instructions = true,
};
