/*
 * vcpu.c - VCPUs (zx_vcpu_*): creation, register access, kick, interrupt
 * queueing and the backend-independent half of the exit loop.  The backend
 * runs the guest and reports each IO/MMIO access through mv__access, the
 * single place where a trap is looked up and the value fed back to the guest
 * is decided, and where a recorder (record.h) hooks in.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

static const char *const exit_names[MV_EXIT_TYPE_COUNT] = {
  [MV_EXIT_IO] = "io", [MV_EXIT_MEM] = "mem", [MV_EXIT_BELL] = "bell",
  [MV_EXIT_HLT] = "hlt", [MV_EXIT_SHUTDOWN] = "shutdown", [MV_EXIT_KICK] = "kick",
  [MV_EXIT_DEBUG] = "debug", [MV_EXIT_FAIL_ENTRY] = "fail_entry",
  [MV_EXIT_INTERNAL_ERROR] = "internal_error", [MV_EXIT_SYSTEM_EVENT] = "system_event",
  [MV_EXIT_EXCEPTION] = "exception", [MV_EXIT_TIMEOUT] = "timeout", [MV_EXIT_SYSCALL] = "syscall", [MV_EXIT_UNKNOWN] = "unknown",
};

const char *mv_exit_type_name(mv_exit_type t) {
  return (unsigned)t < MV_EXIT_TYPE_COUNT ? exit_names[t] : "unknown";
}

int mv_vcpu_create(mv_guest *g, uint64_t entry, mv_vcpu **out, mv_err *err) {
  if (g->closed) return mv__fail(err, -EBADF, "guest:vcpu: guest is closed");
  if (g->nvcpus == MV_MAX_VCPUS)
    return mv__fail(err, -ENOSPC, "guest:vcpu: too many VCPUs (at most %d)", MV_MAX_VCPUS);
  if (entry > 0xffff)
    return mv__fail(err, -ERANGE, "guest:vcpu: real-mode entry 0x%" PRIx64 " is above 0xffff", entry);
  mv_vcpu *c = calloc(1, sizeof *c);
  if (!c) return mv__fail(err, -ENOMEM, "guest:vcpu: out of memory");
  c->guest = g;
  c->id = g->nvcpus;
  int r = g->be->vcpu_create(c, entry, err);
  if (r < 0) {
    free(c);
    return r;
  }
  g->vcpus[g->nvcpus++] = c;
  mv_guest_retain(g);
  *out = c;
  return 0;
}

void mv_vcpu_destroy(mv_vcpu *c) {
  if (!c) return;
  mv_guest *g = c->guest;
  if (!c->destroyed && !g->closed) g->be->vcpu_destroy(c);
  c->destroyed = true;
  for (int i = 0; i < g->nvcpus; i++)
    if (g->vcpus[i] == c) g->vcpus[i] = NULL;   /* ids stay stable */
  free(c);
  mv_guest_release(g);
}

mv_guest *mv_vcpu_guest(const mv_vcpu *c) { return c->guest; }
_Static_assert(offsetof(struct mv_vcpu, head) == 0, "mv_vcpu_user reads the head at the start of a VCPU");
void mv_vcpu_set_user(mv_vcpu *c, void *user) { c->head.user = user; }
int mv_guest_vcpu_count(const mv_guest *g) { return g->nvcpus; }
mv_vcpu *mv_guest_vcpu(const mv_guest *g, int i) { return i >= 0 && i < g->nvcpus ? g->vcpus[i] : NULL; }
int mv_vcpu_id(const mv_vcpu *c) { return c->id; }

static int check_live(mv_vcpu *c, const char *what, mv_err *err) {
  if (c->guest->closed || c->destroyed) return mv__fail(err, -EBADF, "vcpu:%s: the guest is closed", what);
  const char *why = c->guest->smp ? mv__smp_refuse(c, strcmp(what, "enter") == 0) : NULL;   /* smp.c */
  if (why) return mv__fail(err, -EBUSY, "vcpu:%s: VCPU %d %s", what, c->id, why);
  return 0;
}

/* {====================================================== the exit path */

/* mv__access (inline in internal.h) takes an access to its trap's
 * callback; the other ends of an access are here. */

/* An access while a recorder, VCPU threads, timing or a trace is on. */
int mv__access_hooked(mv_vcpu *c, mv_exit *e, uint64_t *value) {
  if (c->guest->rec) return mv__rec_access(c, e, value);   /* record_run.c */
  return mv__access_traps(c, e, value);
}

int mv__access_untrapped(mv_vcpu *c, mv_trap *tr, mv_exit *e, uint64_t *value) {
  mv_guest *g = c->guest;
  /* what a read gets: all ones, as from an empty bus */
  uint64_t answer = e->write ? 0 : mv__size_ones(e->size);
  e->trap_id = 0;
  if (tr) {                   /* a doorbell */
    if (!e->write) {          /* doorbells are write-only: reads see an empty bus */
      *value = answer;
      return MV_ACCESS_CONTINUE;
    }
    if (g->nbells == MV_BELL_QUEUE) {
      mv_exit failed;
      if (mv__bells_drain(g, c, &failed) == MV_TRAP_FAIL) {
        *e = failed;
        return MV_ACCESS_STOP;
      }
    }
    g->bells[g->nbells].trap_id = tr->id;
    g->bells[g->nbells].addr = e->addr;
    g->nbells++;
    return MV_ACCESS_CONTINUE;
  }
  if (!e->write) *value = e->data = answer;   /* unclaimed: the caller of enter sees it */
  return MV_ACCESS_STOP;
}

int mv_vcpu_enter(mv_vcpu *c, mv_exit *exit, mv_err *err) {
  int r = check_live(c, "enter", err);
  if (r) return r;
  if (c->in_enter) return mv__fail(err, -EBUSY, "vcpu:enter: called from inside a trap handler of the same VCPU");
  memset(exit, 0, sizeof *exit);
  mv_guest *g = c->guest;
  uint64_t start = g->trace ? mv__now_ns() : 0;
  if (g->rec && (r = mv__rec_enter(c, err)) < 0) return r;
  c->enter_start = start;
  c->in_enter = true;
  c->exit = exit;
  if (__atomic_exchange_n(&c->kick_pending, 0, __ATOMIC_ACQ_REL)) {
    exit->type = MV_EXIT_KICK;
    r = 0;
  } else {
    r = g->be->vcpu_run(c, err);
  }
  bool closing = __atomic_load_n(&g->close_requested, __ATOMIC_ACQUIRE);
  if (r == 0 && !closing) {
    mv_exit failed;
    if ((g->rec ? mv__rec_drain(g, c, &failed) : mv__bells_drain(g, c, &failed)) == MV_TRAP_FAIL &&
        !exit->handler_failed)
      *exit = failed;
  }
  if (g->rec) r = mv__rec_exit(c, exit, r, err);
  c->exit = NULL;
  c->in_enter = false;
  if (closing && !g->smp) {   /* in guest:run, the run closes it once every VCPU stopped */
    g->close_requested = false;
    mv_guest_close(g);
    return mv__fail(err, -EBADF, "vcpu:enter: the guest was closed by a trap handler");
  }
  if (r == 0) mv__note_exit(c, exit, start);
  return r;
}

bool mv_vcpu_can_unwind(const mv_vcpu *c) {   /* not while recording or replaying: the recorder's hooks keep the per-exit protected call */
  return !c->destroyed && !c->guest->closed && c->guest->rec == NULL && c->guest->be->vcpu_unwound != NULL;
}

int mv_vcpu_enter_unwound(mv_vcpu *c, mv_err *err) {
  if (!c->in_enter) return 0;   /* the jump came from outside an enter */
  mv_guest *g = c->guest;
  mv_exit *exit = c->exit;
  mv__timer_unwound(c);
  if (!c->destroyed && !g->closed) g->be->vcpu_unwound(c);
  exit->handler_failed = true;
  if (!exit->write) exit->data = UINT64_MAX;
  if (!g->close_requested && !g->closed) {   /* as enter does after a failed access; the access stays the failure */
    mv_exit failed;
    mv__bells_drain(g, c, &failed);
  }
  c->exit = NULL;
  c->in_enter = false;
  if (g->close_requested) {
    g->close_requested = false;
    mv_guest_close(g);
    return mv__fail(err, -EBADF, "vcpu:enter: the guest was closed by a trap handler");
  }
  mv__note_exit(c, exit, c->enter_start);
  return 1;
}

void mv_vcpu_kick(mv_vcpu *c) {
  __atomic_store_n(&c->kick_pending, 1, __ATOMIC_RELEASE);
  if (!c->destroyed && !c->guest->closed) c->guest->be->vcpu_kick(c);
}

#define MV_SANDBOX_MAX 16   /* ranges, and clean exits */

int mv_vcpu_declare_sandbox(mv_vcpu *c, const uint64_t (*ranges)[2], int nranges, const uint64_t *clean,
                            int nclean, mv_err *err) {
  int r = check_live(c, "declare_sandbox", err);
  if (r) return r;
  if (nranges < 0 || nranges > MV_SANDBOX_MAX || nclean < 0 || nclean > MV_SANDBOX_MAX)
    return mv__fail(err, -EINVAL, "vcpu:declare_sandbox: %d ranges and %d clean exits (at most %d each)", nranges,
                    nclean, MV_SANDBOX_MAX);
  for (int i = 0; i < nranges; i++)
    if (ranges[i][1] == 0 || ranges[i][0] + ranges[i][1] < ranges[i][0] ||
        mv_guest_check_range(c->guest, "declare_sandbox", ranges[i][0], ranges[i][1], err) < 0)
      return mv__fail(err, -EINVAL, "vcpu:declare_sandbox: range 0x%" PRIx64 "+0x%" PRIx64 " is not mapped memory",
                      ranges[i][0], ranges[i][1]);
  return c->guest->be->declare_sandbox ? c->guest->be->declare_sandbox(c, ranges, nranges, clean, nclean, err) : 0;
}

int mv_vcpu_set_debug(mv_vcpu *c, unsigned flags, mv_err *err) {
  int r = check_live(c, "debug", err);
  if (r) return r;
  if (flags & ~(unsigned)(MV_DEBUG_SINGLESTEP | MV_DEBUG_SW_BREAKPOINTS))
    return mv__fail(err, -EINVAL, "vcpu:debug: unknown flags 0x%x", flags);
  r = c->guest->be->set_debug(c, flags, err);
  if (r == 0) c->debug = flags;
  return r;
}

int mv_vcpu_set_once_breakpoints(mv_vcpu *c, const uint64_t *addrs, size_t n, mv_err *err) {
  int r = check_live(c, "once_breakpoints", err);
  if (r) return r;
  if (!c->guest->be->set_once)
    return mv__fail(err, -ENOTSUP, "vcpu:once_breakpoints: the %s backend has none (int3 breakpoints work everywhere)",
                    c->guest->be->name);
  return c->guest->be->set_once(c, addrs, n, err);
}

int mv_vcpu_arm_once_breakpoints(mv_vcpu *c, mv_err *err) {
  int r = check_live(c, "arm_breakpoints", err);
  if (r) return r;
  if (c->guest->be->rearm_once) c->guest->be->rearm_once(c);
  return 0;
}

int mv_vcpu_set_hw_breakpoints(mv_vcpu *c, const uint64_t *addrs, int n, mv_err *err) {
  int r = check_live(c, "debug", err);
  if (r) return r;
  if (n < 0 || n > MV_HW_BREAKPOINTS)
    return mv__fail(err, -EINVAL, "vcpu:debug: %d hardware breakpoints (at most %d)", n, MV_HW_BREAKPOINTS);
  if (n > 0 && !c->guest->be->hw_breakpoints)
    return mv__fail(err, -ENOTSUP, "vcpu:debug: the %s backend has no hardware breakpoints", c->guest->be->name);
  uint64_t old[MV_HW_BREAKPOINTS];
  int nold = c->nhw_bp;
  memcpy(old, c->hw_bp, sizeof old);
  for (int i = 0; i < n; i++) c->hw_bp[i] = addrs[i];
  c->nhw_bp = n;
  r = c->guest->be->set_debug(c, c->debug, err);
  if (r < 0) {
    memcpy(c->hw_bp, old, sizeof old);
    c->nhw_bp = nold;
  }
  return r;
}

/* {====================================================== interrupts */

int mv_vcpu_interrupt(mv_vcpu *c, uint32_t vector, mv_err *err) {
  if (c->guest->be->interrupt && !c->guest->closed && !c->destroyed && vector <= 255) {
    int r = c->guest->be->interrupt(c, vector, err);   /* its local APIC takes it */
    if (r) return r < 0 ? r : 0;
  }
  if (c->guest->threaded && mv__smp_post_interrupt(c, vector)) return 0;   /* running on another thread */
  int r = check_live(c, "interrupt", err);
  if (r) return r;
  if (vector > 255) return mv__fail(err, -EINVAL, "vcpu:interrupt: vector %" PRIu32 " is not in 0..255", vector);
  if (c->guest->rec && (r = mv__rec_irq(c, vector, err)) < 0) return r;
  uint32_t bit = UINT32_C(1) << (vector % 32);
  if (!(c->pending_irq[vector / 32] & bit)) {
    c->pending_irq[vector / 32] |= bit;
    c->npending_irq++;
  }
  return 0;
}

int mv__take_interrupt(mv_vcpu *c) {
  for (int w = 7; w >= 0; w--)   /* higher vectors first, as the local APIC orders them */
    if (c->pending_irq[w]) {
      int b = 31 - __builtin_clz(c->pending_irq[w]);
      c->pending_irq[w] &= ~(UINT32_C(1) << b);
      c->npending_irq--;
      if (c->guest->rec) mv__rec_deliver(c, w * 32 + b);
      return w * 32 + b;
    }
  return -1;
}

/* {====================================================== state */

int mv_vcpu_read_state(mv_vcpu *c, mv_regs *regs, mv_err *err) {
  int r = check_live(c, "read_state", err);
  return r ? r : c->guest->be->get_regs(c, regs, err);
}

int mv_vcpu_write_state(mv_vcpu *c, const mv_regs *regs, mv_err *err) {
  int r = check_live(c, "write_state", err);
  if (!r && c->guest->rec) r = mv__rec_regs(c, regs, err);
  return r ? r : c->guest->be->set_regs(c, regs, err);
}

int mv_vcpu_read_sregs(mv_vcpu *c, mv_sregs *s, mv_err *err) {
  int r = check_live(c, "sregs", err);
  return r ? r : c->guest->be->get_sregs(c, s, err);
}

int mv_vcpu_read_fpu(mv_vcpu *c, mv_fpu *fpu, mv_err *err) {
  int r = check_live(c, "fpu", err);
  return r ? r : c->guest->be->get_fpu(c, fpu, err);
}

int mv_vcpu_write_fpu(mv_vcpu *c, const mv_fpu *fpu, mv_err *err) {
  int r = check_live(c, "write_fpu", err);
  if (!r && c->guest->rec) r = mv__rec_fpu(c, fpu, err);
  return r ? r : c->guest->be->set_fpu(c, fpu, err);
}

int mv_vcpu_set_cpuid(mv_vcpu *c, uint32_t leaf, uint32_t subleaf, const uint32_t regs[4], mv_err *err) {
  int r = check_live(c, "cpuid_set", err);
  if (!r && c->guest->rec) r = mv__rec_cpuid(c, leaf, subleaf, regs, err);
  return r ? r : c->guest->be->set_cpuid(c, leaf, subleaf, regs, err);
}

int mv_guest_irq(mv_guest *g, uint32_t line, int level, mv_err *err) {
  if (g->closed) return mv__fail(err, -EBADF, "guest:irq: guest is closed");
  if (!g->be->irq) return mv__fail(err, -ENOTSUP, "guest:irq: the %s backend has no interrupt controller", g->be->name);
  int r = g->rec ? mv__rec_irq_line(g, line, level, err) : 0;
  if (r < 0) return r;
  return g->be->irq(g, line, level, err);
}

int mv_vcpu_read_msr(mv_vcpu *c, uint32_t index, uint64_t *value, mv_err *err) {
  int r = check_live(c, "msr", err);
  return r ? r : c->guest->be->get_msr(c, index, value, err);
}

int mv_vcpu_write_msr(mv_vcpu *c, uint32_t index, uint64_t value, mv_err *err) {
  int r = check_live(c, "msr", err);
  if (!r && c->guest->rec) r = mv__rec_msr(c, index, value, err);
  return r ? r : c->guest->be->set_msr(c, index, value, err);
}

int mv_vcpu_write_sregs(mv_vcpu *c, const mv_sregs *s, mv_err *err) {
  int r = check_live(c, "write_sregs", err);
  if (!r && c->guest->rec) r = mv__rec_sregs(c, s, err);
  return r ? r : c->guest->be->set_sregs(c, s, err);
}
