/*
 * kvm_sandbox.c - what lets a restore of a sandboxed VCPU leave out the
 * debug registers and XCR0 (mv_vcpu_declare_sandbox).  The guest can change
 * those only at CPL 0 (MOV DR, XSETBV) or, for DR6, by a debug exception.  A
 * sandbox's caller vouches that its CPL 0 code exits at once and changes
 * neither; this file checks everything else, per run:
 *
 *   entry  CPL 3; CR0, CR3, CR4, EFER, GDTR, IDTR, TR as declared; no host
 *          debugging but software breakpoints (KVM takes the guest's #BP
 *          then and leaves its debug registers be); DR7 known (restored or
 *          saved since) with no breakpoint enabled; the declared ranges
 *          hold what they held when declared (compared once after anything
 *          could have written them)
 *   exits  each one at CPL 3, or at a declared clean address with TF clear
 *          (a trap flag would make the next step a debug exception)
 *   after  at the next restore or snapshot: the ranges were not written
 *          (guest or host) since the last one
 *
 * A run that breaks any of it marks the two classes touched (kvm_state.c).
 *
 * "After" asks the dirty log, which on some hosts (QEMU's emulated SVM)
 * also holds pages only read or run, and may hold page tables the CPU
 * walked.  A sandbox can do without it when it is trusted: its declared
 * content seals the ranges (kvm_seal.c: ring 3 cannot write them, ring-0
 * entry stacks miss them), no other mapping shows their pages, the guest has
 * one VCPU, its mappings are as declared, every run of the VCPU started with
 * the ranges as declared (so no translation of other tables can linger in
 * its TLB), and the host has not written them since the last run started.
 * Then nothing can have written them.  A host write to them (or a change of
 * the mappings) takes the trust away for good, and the log decides again.
 */
#include <inttypes.h>
#include <stdlib.h>
#include "kvm.h"

#define TF (UINT64_C(1) << 8)

/* The special registers a sandbox is declared with. */
static bool same_frame(const struct kvm_sregs *a, const struct kvm_sregs *b) {
  return a->cr0 == b->cr0 && a->cr3 == b->cr3 && a->cr4 == b->cr4 && a->efer == b->efer &&
         a->gdt.base == b->gdt.base && a->gdt.limit == b->gdt.limit && a->idt.base == b->idt.base &&
         a->idt.limit == b->idt.limit && a->tr.base == b->tr.base && a->tr.selector == b->tr.selector &&
         a->tr.limit == b->tr.limit;
}

void kvm_sandbox_free(kvm_vcpu *kv) {
  if (!kv->sb) return;
  free(kv->sb->content);
  free(kv->sb);
  kv->sb = NULL;
}

static size_t content_size(const kvm_sandbox *sb) {
  size_t n = 0;
  for (int i = 0; i < sb->nranges; i++) n += (size_t)sb->ranges[i][1];
  return n;
}

/* The ranges' content now equals what they held when declared. */
static bool content_same(mv_vcpu *c, kvm_sandbox *sb) {
  size_t at = 0;
  for (int i = 0; i < sb->nranges; i++) {
    uint64_t gpa = sb->ranges[i][0], len = sb->ranges[i][1];
    while (len) {   /* through the mappings, without a copy */
      const mv_mapping *m = mv__guest_find_mapping(c->guest, gpa);
      if (!m) return false;
      uint64_t in = gpa - m->gpa, n = m->size - in < len ? m->size - in : len;
      if (memcmp(m->vmo->mem + m->offset + in, sb->content + at, (size_t)n) != 0) return false;
      gpa += n;
      len -= n;
      at += (size_t)n;
    }
  }
  return true;
}

/* The VMOs behind the ranges, each watching the ranges' bytes for host
 * writes (mv__vmo_mark_dirty). */
static void watch_vmos(mv_vcpu *c, kvm_sandbox *sb) {
  for (int i = 0; i < sb->nranges; i++) {
    uint64_t gpa = sb->ranges[i][0], len = sb->ranges[i][1];
    while (len) {
      const mv_mapping *m = mv__guest_find_mapping(c->guest, gpa);
      uint64_t in = gpa - m->gpa, n = m->size - in < len ? m->size - in : len;
      mv_vmo *v = m->vmo;
      uint64_t lo = m->offset + in, hi = lo + n;
      if (v->guard_lo == v->guard_hi) v->guard_lo = lo, v->guard_hi = hi;
      if (lo < v->guard_lo) v->guard_lo = lo;
      if (hi > v->guard_hi) v->guard_hi = hi;
      int k = 0;
      while (k < sb->nvmos && sb->vmos[k] != v) k++;
      if (k == sb->nvmos && k < 16) {
        sb->vmos[sb->nvmos++] = v;
        sb->vmo_maps[k] = v->mappings_made;
        if (v->mappings != 1) sb->sealed = false;   /* another mapping may show the pages to ring 3 */
      }
      if (k == 16) sb->sealed = false;
      gpa += n;
      len -= n;
    }
  }
}

/* The host writes to the ranges' bytes so far (while the mappings are as declared). */
static uint64_t host_mark(const kvm_sandbox *sb) {
  uint64_t n = 0;
  for (int i = 0; i < sb->nvmos; i++) n += sb->vmos[i]->guard_writes;
  return n;
}

/* Whether the dirty log can be left out of the "after" check (see the top). */
static bool trusted(const mv_vcpu *c, const kvm_sandbox *sb) {
  if (!sb->sealed || !sb->tlb_clean || c->guest->nvcpus != 1 || c->guest->map_gen != sb->map_gen) return false;
  for (int i = 0; i < sb->nvmos; i++)
    if (sb->vmos[i]->mappings_made != sb->vmo_maps[i]) return false;
  return true;
}

/* The host wrote the ranges, or changed the mappings, since the last run
 * started: that run may have seen it, so the VCPU's TLB is not known clean. */
static void note_host_writes(mv_vcpu *c, kvm_sandbox *sb) {
  if (sb->tlb_clean && (c->guest->map_gen != sb->map_gen || host_mark(sb) != sb->run_mark)) sb->tlb_clean = false;
}

int kvm_sandbox_declare(mv_vcpu *c, const uint64_t (*ranges)[2], int nranges, const uint64_t *clean, int nclean,
                        mv_err *err) {
  kvm_vcpu *kv = KV(c);
  kvm_sandbox_free(kv);
  kv->touched |= KS_DEBUGREGS | KS_XCRS;   /* nothing is known of the runs before */
  if (nranges == 0 || !kv->sync) return 0;   /* (the checks need the registers of every exit) */
  kvm_sandbox *sb = calloc(1, sizeof *sb);
  if (!sb) return mv__fail(err, -ENOMEM, "vcpu:declare_sandbox: out of memory");
  for (int i = 0; i < nranges; i++) {   /* whole pages: the dirty log's unit */
    uint64_t lo = ranges[i][0] & ~(uint64_t)(MV_PAGE_SIZE - 1);
    uint64_t hi = (ranges[i][0] + ranges[i][1] + MV_PAGE_SIZE - 1) & ~(uint64_t)(MV_PAGE_SIZE - 1);
    sb->ranges[i][0] = lo;
    sb->ranges[i][1] = hi - lo;
  }
  sb->nranges = nranges;
  memcpy(sb->clean, clean, sizeof *clean * (size_t)nclean);
  sb->nclean = nclean;
  sb->frame = kv->run->s.regs.sregs;
  size_t n = content_size(sb), at = 0;
  sb->content = malloc(n ? n : 1);
  if (!sb->content) {
    free(sb);
    return mv__fail(err, -ENOMEM, "vcpu:declare_sandbox: out of memory");
  }
  for (int i = 0; i < nranges; i++) {
    int r = mv_guest_read(c->guest, sb->ranges[i][0], sb->content + at, sb->ranges[i][1], err);
    if (r < 0) {
      free(sb->content);
      free(sb);
      return r;
    }
    at += (size_t)sb->ranges[i][1];
  }
  sb->verified = true;
  sb->sealed = kvm_seal_proved(sb) && c->guest->nvcpus == 1;
  watch_vmos(c, sb);
  sb->tlb_clean = !kv->ran;   /* (a VCPU that never ran has nothing cached) */
  sb->map_gen = c->guest->map_gen;
  sb->run_mark = host_mark(sb);
  kv->sb = sb;
  return 0;
}

/* At the start of a run: whether it starts inside the sandbox. */
bool kvm_sandbox_entry(mv_vcpu *c) {
  kvm_vcpu *kv = KV(c);
  kvm_sandbox *sb = kv->sb;
  if (!sb) return false;
  note_host_writes(c, sb);
  const struct kvm_sregs *s = &kv->run->s.regs.sregs;
  bool as_declared = (s->cs.selector & 3) == 3 && s->cs.dpl == 3 && same_frame(s, &sb->frame);
  if (as_declared && !sb->verified && !sb->mismatch) {   /* (a mismatch: compared already, not since changed) */
    sb->verified = content_same(c, sb);
    sb->mismatch = !sb->verified;
  }
  if (!as_declared || !sb->verified) sb->tlb_clean = false;   /* it runs with other tables, or at CPL 0 */
  if (sb->tlb_clean) sb->run_mark = host_mark(sb);   /* (the VMOs are valid: the mappings are as declared) */
  return as_declared && sb->verified && !(c->debug & ~(unsigned)MV_DEBUG_SW_BREAKPOINTS) && !c->nhw_bp &&
         !(kv->touched & KS_DEBUGREGS) && sb->dr7_known && !(sb->dr7 & 0xff);
}

/* After each KVM_RUN of a run that started inside: whether it still is. */
bool kvm_sandbox_exit_ok(kvm_vcpu *kv) {
  const struct kvm_sync_regs *r = &kv->run->s.regs;
  if ((r->sregs.cs.selector & 3) == 3) return true;
  if (r->regs.rflags & TF) return false;
  for (int i = 0; i < kv->sb->nclean; i++)
    if (r->regs.rip == kv->sb->clean[i]) return true;
  return false;
}

/* Whether the ranges were written (by the guest or the host) since the last
 * snapshot or restore: dirty.c has collected into the mappings' bits. */
static bool written(mv_vcpu *c) {
  kvm_sandbox *sb = KV(c)->sb;
  for (int i = 0; i < sb->nranges; i++)
    for (uint64_t a = sb->ranges[i][0]; a < sb->ranges[i][0] + sb->ranges[i][1]; a += MV_PAGE_SIZE) {
      const mv_mapping *m = mv__guest_find_mapping(c->guest, a);
      if (!m) return true;
      uint64_t p = (a - m->gpa) / MV_PAGE_SIZE, bit = UINT64_C(1) << (p % 64);
      if ((m->dirty_snap[p / 64] | m->dirty_maybe[p / 64]) & bit) return true;
    }
  return false;
}

/* A snapshot or restore of the VCPU: the classes the runs since did not
 * keep to the sandbox (or the ranges' writes) may have touched, and the
 * debug register DR7 from now on. */
unsigned kvm_sandbox_boundary(mv_vcpu *c, uint64_t dr7, bool full) {
  kvm_vcpu *kv = KV(c);
  kvm_sandbox *sb = kv->sb;
  if (!sb) return 0;
  unsigned more = 0;
  note_host_writes(c, sb);
  bool was_written = written(c);
  /* A trusted sandbox's ranges were not written since the last boundary
   * (they only look so in the log): a snapshot leaves them as they are, and
   * an incremental restore (not full) copies back what they hold, so they
   * stay verified.  Otherwise they are compared again before the next run
   * inside. */
  if (was_written && !trusted(c, sb)) {
    sb->verified = false;
    more = KS_DEBUGREGS | KS_XCRS;
  }
  /* Pages read from the dirty ring stay unprotected (and count as written)
   * until re-protected: do that after a first write, so that the next
   * interval can be clean (and a restore has fewer such pages to compare).
   * Not again while every interval shows the ranges written: hosts whose log
   * also holds pages only read or run (QEMU's emulated SVM) show them so
   * always, and would pay an ioctl per restore for nothing. */
  if (was_written && !sb->last_written) kvm_dirty_rearm(c->guest, NULL);   /* (a failure: they keep showing written) */
  sb->last_written = was_written;
  if (full) sb->verified = false;   /* all of memory may be another snapshot's */
  sb->mismatch = false;     /* memory may hold the declared content again */
  sb->dr7 = dr7;
  sb->dr7_known = true;
  return more;
}
