/*
 * kvm_regs.c - a KVM VCPU's registers, special registers and pending
 * events.  Where KVM offers KVM_CAP_SYNC_REGS they live in the kvm_run
 * page: KVM stores them there at every exit and loads the parts marked in
 * kvm_dirty_regs at the next KVM_RUN, so reading cpu.rax in a handler,
 * setting rip, or a restore's register part costs no ioctl.  Without the
 * capability (or with MOONVISOR_SYNC_REGS=0, or mv.guest{ sync_regs =
 * false }) every access is its ioctl.
 *
 * Writes that change the CPU mode (CR0, CR3, CR4, CR8, EFER, APIC base) go
 * to KVM at once in both cases, and are read back: some hosts accept a mode
 * they do not run (kvm-pvm drops CR0.PG without EFER.LME).
 */
#include <inttypes.h>
#include "kvm.h"

static struct kvm_sync_regs *cache(kvm_vcpu *kv) { return &kv->run->s.regs; }

static void mark_dirty(kvm_vcpu *kv, unsigned what) { kv->run->kvm_dirty_regs |= what; }

/* {====================================================== general registers */

static mv_regs regs_out(const struct kvm_regs *r) {
  return (mv_regs){ r->rax, r->rbx, r->rcx, r->rdx, r->rsi, r->rdi, r->rbp, r->rsp,
                    r->r8, r->r9, r->r10, r->r11, r->r12, r->r13, r->r14, r->r15, r->rip, r->rflags };
}

static struct kvm_regs regs_in(const mv_regs *i) {
  return (struct kvm_regs){ .rax = i->rax, .rbx = i->rbx, .rcx = i->rcx, .rdx = i->rdx,
                            .rsi = i->rsi, .rdi = i->rdi, .rsp = i->rsp, .rbp = i->rbp,
                            .r8 = i->r8, .r9 = i->r9, .r10 = i->r10, .r11 = i->r11,
                            .r12 = i->r12, .r13 = i->r13, .r14 = i->r14, .r15 = i->r15,
                            .rip = i->rip, .rflags = i->rflags };
}

int kvm_get_regs(mv_vcpu *c, mv_regs *o, mv_err *err) {
  kvm_vcpu *kv = KV(c);
  if (kv->sync) {
    *o = regs_out(&cache(kv)->regs);
    return 0;
  }
  struct kvm_regs r;
  IOCTL_OR_FAIL(kv->fd, KVM_GET_REGS, &r, "vcpu:read_state");
  *o = regs_out(&r);
  return 0;
}

int kvm_set_regs(mv_vcpu *c, const mv_regs *i, mv_err *err) {
  kvm_vcpu *kv = KV(c);
  struct kvm_regs r = regs_in(i);
  if (kv->sync) {
    cache(kv)->regs = r;
    mark_dirty(kv, KVM_SYNC_X86_REGS);
    return 0;
  }
  IOCTL_OR_FAIL(kv->fd, KVM_SET_REGS, &r, "vcpu:write_state");
  return 0;
}

/* {====================================================== special registers */

static mv_segment seg_out(const struct kvm_segment *s) {
  return (mv_segment){ s->base, s->limit, s->selector, s->type, s->present, s->dpl,
                       s->db, s->s, s->l, s->g, s->avl, s->unusable };
}

static void seg_in(struct kvm_segment *d, const mv_segment *s) {
  *d = (struct kvm_segment){ .base = s->base, .limit = s->limit, .selector = s->selector,
                             .type = s->type, .present = s->present, .dpl = s->dpl, .db = s->db,
                             .s = s->s, .l = s->l, .g = s->g, .avl = s->avl, .unusable = s->unusable };
}

static mv_sregs sregs_out(const struct kvm_sregs *s) {
  return (mv_sregs){ seg_out(&s->cs), seg_out(&s->ds), seg_out(&s->es), seg_out(&s->fs), seg_out(&s->gs),
                     seg_out(&s->ss), seg_out(&s->tr), seg_out(&s->ldt),
                     { s->gdt.base, s->gdt.limit }, { s->idt.base, s->idt.limit },
                     s->cr0, s->cr2, s->cr3, s->cr4, s->cr8, s->efer, s->apic_base };
}

/* Everything of *i into *s; s's interrupt_bitmap stays. */
static void sregs_in(struct kvm_sregs *s, const mv_sregs *i) {
  seg_in(&s->cs, &i->cs); seg_in(&s->ds, &i->ds); seg_in(&s->es, &i->es); seg_in(&s->fs, &i->fs);
  seg_in(&s->gs, &i->gs); seg_in(&s->ss, &i->ss); seg_in(&s->tr, &i->tr); seg_in(&s->ldt, &i->ldt);
  s->gdt.base = i->gdt.base; s->gdt.limit = i->gdt.limit;
  s->idt.base = i->idt.base; s->idt.limit = i->idt.limit;
  s->cr0 = i->cr0; s->cr2 = i->cr2; s->cr3 = i->cr3; s->cr4 = i->cr4; s->cr8 = i->cr8;
  s->efer = i->efer; s->apic_base = i->apic_base;
}

int kvm_get_sregs(mv_vcpu *c, mv_sregs *o, mv_err *err) {
  kvm_vcpu *kv = KV(c);
  if (kv->sync) {
    *o = sregs_out(&cache(kv)->sregs);
    return 0;
  }
  struct kvm_sregs s;
  IOCTL_OR_FAIL(kv->fd, KVM_GET_SREGS, &s, "vcpu:sregs");
  *o = sregs_out(&s);
  return 0;
}

/* A host may accept KVM_SET_SREGS and still not apply a mode it does not
 * implement (kvm-pvm drops CR0.PG unless EFER.LME: it pages only in long
 * mode).  The mode bits are read back so that such a refusal is an error
 * naming the register instead of a guest that runs in another mode.  *got
 * receives what KVM holds now. */
static int check_sregs_applied(int fd, const mv_sregs *want, struct kvm_sregs *got, mv_err *err) {
  static const struct { const char *reg, *bit; int which; uint64_t mask; } mode_bits[] = {
    { "cr0", "PE", 0, 1u << 0 }, { "cr0", "PG", 0, UINT64_C(1) << 31 },
    { "cr4", "PAE", 4, 1u << 5 }, { "cr4", "PSE", 4, 1u << 4 },
    { "efer", "LME", 8, 1u << 8 },
  };
  IOCTL_OR_FAIL(fd, KVM_GET_SREGS, got, "vcpu:write_sregs");
  for (size_t k = 0; k < sizeof mode_bits / sizeof mode_bits[0]; k++) {
    uint64_t w = mode_bits[k].which == 0 ? want->cr0 : mode_bits[k].which == 4 ? want->cr4 : want->efer;
    uint64_t h = mode_bits[k].which == 0 ? got->cr0 : mode_bits[k].which == 4 ? got->cr4 : got->efer;
    if ((w ^ h) & mode_bits[k].mask)
      return mv__fail(err, -ENOTSUP, "vcpu:write_sregs: the host did not apply %s.%s = %d (%s = 0x%" PRIx64
                      " asked, 0x%" PRIx64 " set): this KVM does not run that mode%s",
                      mode_bits[k].reg, mode_bits[k].bit, (w & mode_bits[k].mask) != 0, mode_bits[k].reg, w, h,
                      mode_bits[k].mask == (UINT64_C(1) << 31) && !(want->efer & (1u << 8))
                          ? " (some hosts, kvm-pvm among them, page only in long mode)" : "");
  }
  return 0;
}

/* The registers whose change KVM validates and which can change the mode:
 * equal ones make a write that can wait for the next KVM_RUN. */
static bool same_control(const struct kvm_sregs *a, const struct kvm_sregs *b) {
  return a->cr0 == b->cr0 && a->cr3 == b->cr3 && a->cr4 == b->cr4 && a->cr8 == b->cr8 &&
         a->efer == b->efer && a->apic_base == b->apic_base;
}

int kvm_set_sregs(mv_vcpu *c, const mv_sregs *i, mv_err *err) {
  kvm_vcpu *kv = KV(c);
  struct kvm_sregs s;
  if (kv->sync) s = cache(kv)->sregs;
  else IOCTL_OR_FAIL(kv->fd, KVM_GET_SREGS, &s, "vcpu:write_sregs");   /* keeps interrupt_bitmap */
  sregs_in(&s, i);
  if (kv->sync && same_control(&s, &cache(kv)->sregs)) {   /* segments, tables, cr2: no ioctl */
    cache(kv)->sregs = s;
    mark_dirty(kv, KVM_SYNC_X86_SREGS);
    return 0;
  }
  IOCTL_OR_FAIL(kv->fd, KVM_SET_SREGS, &s, "vcpu:write_sregs");
  struct kvm_sregs got;
  if (kv->sync) {
    cache(kv)->sregs = s;
    kv->run->kvm_dirty_regs &= ~(uint64_t)KVM_SYNC_X86_SREGS;
  }
  int r = check_sregs_applied(kv->fd, i, &got, err);
  if (kv->sync && (r == 0 || r == -ENOTSUP)) cache(kv)->sregs = got;   /* what KVM holds */
  return r;
}

/* {====================================================== events */

int kvm_get_events(mv_vcpu *c, struct kvm_vcpu_events *e, mv_err *err) {
  kvm_vcpu *kv = KV(c);
  if (kv->sync) {
    *e = cache(kv)->events;
    return 0;
  }
  IOCTL_OR_FAIL(kv->fd, KVM_GET_VCPU_EVENTS, e, "guest:snapshot");
  return 0;
}

int kvm_set_events(mv_vcpu *c, const struct kvm_vcpu_events *e, mv_err *err) {
  kvm_vcpu *kv = KV(c);
  if (kv->sync) {
    cache(kv)->events = *e;
    mark_dirty(kv, KVM_SYNC_X86_EVENTS);
    return 0;
  }
  IOCTL_OR_FAIL(kv->fd, KVM_SET_VCPU_EVENTS, e, "guest:restore");
  return 0;
}

/* {====================================================== cache upkeep */

int kvm_regs_flush(mv_vcpu *c, const char *what, mv_err *err) {
  kvm_vcpu *kv = KV(c);
  if (!kv->sync) return 0;
  uint64_t dirty = kv->run->kvm_dirty_regs;
  if ((dirty & KVM_SYNC_X86_REGS) && ioctl(kv->fd, KVM_SET_REGS, &cache(kv)->regs) < 0)
    return mv__fail(err, -errno, "%s: KVM_SET_REGS: %s", what, strerror(errno));
  if ((dirty & KVM_SYNC_X86_SREGS) && ioctl(kv->fd, KVM_SET_SREGS, &cache(kv)->sregs) < 0)
    return mv__fail(err, -errno, "%s: KVM_SET_SREGS: %s", what, strerror(errno));
  if ((dirty & KVM_SYNC_X86_EVENTS) && ioctl(kv->fd, KVM_SET_VCPU_EVENTS, &cache(kv)->events) < 0)
    return mv__fail(err, -errno, "%s: KVM_SET_VCPU_EVENTS: %s", what, strerror(errno));
  kv->run->kvm_dirty_regs = 0;
  return 0;
}

int kvm_regs_refetch(mv_vcpu *c, const char *what, mv_err *err) {
  kvm_vcpu *kv = KV(c);
  if (!kv->sync) return 0;
  if (ioctl(kv->fd, KVM_GET_SREGS, &cache(kv)->sregs) < 0)
    return mv__fail(err, -errno, "%s: KVM_GET_SREGS: %s", what, strerror(errno));
  return 0;
}

/* A KVM_RUN that leaves before the guest runs (immediate_exit): KVM takes
 * what is marked dirty and stores everything in the cache. */
static int run_no_guest(kvm_vcpu *kv, mv_err *err) {
  kv->run->immediate_exit = 1;
  int r = ioctl(kv->fd, KVM_RUN, 0);
  kv->run->immediate_exit = 0;
  if (r == 0 || errno != EINTR)
    return mv__fail(err, r == 0 ? -EIO : -errno, "guest:vcpu: KVM_RUN (immediate exit) for the registers: %s",
                    r == 0 ? "the guest ran" : strerror(errno));
  return 0;
}

/* Flat real mode: every segment base 0, RIP = entry, the other registers 0.
 * With sync regs, two KVM_RUNs that leave at once: one fills the cache with
 * the reset state, one hands KVM the changes (so the first real run starts
 * as it does without the cache). */
int kvm_regs_init(mv_vcpu *c, uint64_t entry, mv_err *err) {
  kvm_vcpu *kv = KV(c);
  struct kvm_sregs s, *sp = &s;
  if (kv->sync) {
    kv->run->kvm_valid_regs = KVM_SYNC_ALL;
    int r = run_no_guest(kv, err);
    if (r < 0) return r;
    sp = &cache(kv)->sregs;
  } else {
    IOCTL_OR_FAIL(kv->fd, KVM_GET_SREGS, &s, "guest:vcpu");
  }
  struct kvm_segment *segs[] = { &sp->cs, &sp->ds, &sp->es, &sp->fs, &sp->gs, &sp->ss };
  for (size_t i = 0; i < sizeof segs / sizeof segs[0]; i++) {
    segs[i]->base = 0;
    segs[i]->selector = 0;
  }
  struct kvm_regs r = { .rip = entry, .rflags = 2 };
  if (kv->sync) {
    cache(kv)->regs = r;
    mark_dirty(kv, KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS);
    return run_no_guest(kv, err);
  }
  IOCTL_OR_FAIL(kv->fd, KVM_SET_SREGS, &s, "guest:vcpu");
  IOCTL_OR_FAIL(kv->fd, KVM_SET_REGS, &r, "guest:vcpu");
  return 0;
}
