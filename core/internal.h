/*
 * internal.h - the core's private structures and the backend interface.
 *
 * Files of the core share these; nothing outside core/ includes it.  A
 * backend (kvm/, soft/) implements mv_backend_ops and calls back into the
 * core through mv__access() for every IO/MMIO access it sees, so the trap
 * lookup and the value fed back to the guest live in one place (here, with
 * the rare cases in vcpu.c).
 */
#ifndef MV_INTERNAL_H
#define MV_INTERNAL_H

#include <signal.h>
#include <stdarg.h>
#include "moonvisor.h"

#define MV_MAX_MAPPINGS 64     /* below KVM's 509 user memslots */
#define MV_MAX_VCPUS 64
#define MV_BELL_QUEUE 256      /* pending doorbell writes before a forced drain */

int mv__fail(mv_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

struct mv_vmo {
  unsigned char *mem;      /* mmap(MAP_SHARED | MAP_ANONYMOUS) */
  uint64_t size;           /* whole pages */
  int refs;                /* the owner's plus one per mapping */
  uint64_t *host_dirty;    /* one bit per page written by the host */
  uint64_t host_writes;    /* bumped by every host write: lets the soft backend drop stale translations */
  uint64_t *code_dirty;    /* pages written by the host since the soft backend dropped their translations */
  uint64_t guard_lo, guard_hi;   /* bytes a sandbox watches (kvm_sandbox.c); empty when equal */
  uint64_t guard_writes;   /* host writes that touched them */
  int mappings;            /* guest mappings of it now */
  uint64_t mappings_made;  /* ... and ever */
  struct mv_rec *rec;      /* the recorder of a guest that maps it: host writes are logged (record_run.c) */
};

void mv__vmo_mark_dirty(mv_vmo *vmo, uint64_t off, uint64_t len);

typedef struct mv_mapping {
  uint64_t gpa, size, offset;
  unsigned flags;          /* MV_MAP_* the user asked for */
  mv_vmo *vmo;             /* holds a reference */
  uint32_t slot;           /* backend slot number */
  bool tracked;            /* the backend logs guest writes (LOG_DIRTY or snapshots) */
  uint64_t *dirty_user;    /* pages written since the last mv_guest_dirty_pages */
  uint64_t *dirty_snap;    /* pages written since the guest's base snapshot */
  uint64_t *dirty_maybe;   /* pages the guest may have written since then without a log
                              entry (a dirty ring not yet re-armed): a restore compares them */
} mv_mapping;

/* dirty.c: the one place that merges guest writes (backend log) and host
 * writes (VMO bits) into both consumers' bitmaps. */
int mv__dirty_alloc(mv_mapping *m);
void mv__dirty_free(mv_mapping *m);
/* exact: the caller wants every later guest write logged (dirty_pages);
 * snapshots and restores accept pages in dirty_maybe instead. */
int mv__dirty_collect(mv_guest *g, mv_mapping *m, bool exact, mv_err *err);
int mv__dirty_track_all(mv_guest *g, mv_err *err);

typedef struct mv_trap {
  int id;                  /* > 0, unique within the guest */
  mv_trap_kind kind;
  uint64_t addr, size;
  mv_trap_fn fn;
  mv_trap_release_fn release;
  void *cookie;
  int bell_fd;             /* kvm ioeventfd for a single doorbell address, or -1 */
  uint64_t calls, ns;      /* statistics */
} mv_trap;

/* A sorted, non-overlapping array of traps of one address space. */
typedef struct mv_trap_table {
  mv_trap *items;
  size_t count, cap;
  mv_trap *hit;            /* the trap the last lookup found, tried first; NULL once the table changed */
} mv_trap_table;

/* The trap whose range holds addr, or NULL.  An exit in the range of the
 * one before costs a compare, others a binary search (mv__trap_search,
 * trap.c), which sets `hit`; inserting or removing a trap clears it. */
mv_trap *mv__trap_search(mv_trap_table *t, uint64_t addr);
static inline mv_trap *mv__trap_find(mv_trap_table *t, uint64_t addr) {
  mv_trap *tr = t->hit;
  if (tr && tr->addr <= addr && addr - tr->addr < tr->size) return tr;
  return mv__trap_search(t, addr);
}
void mv__traps_clear(mv_guest *g);
/* Runs the callbacks of pending doorbell writes; on MV_TRAP_FAIL fills *failed. */
int mv__bells_drain(mv_guest *g, mv_vcpu *cpu, mv_exit *failed);
bool mv__trap_overlaps(const mv_trap_table *t, uint64_t addr, uint64_t size);

typedef struct mv_backend_ops mv_backend_ops;

struct mv_guest {
  const mv_backend_ops *be;
  void *be_state;          /* the backend's own per-guest data */
  int refs;                /* the owner's plus one per VCPU */
  bool closed;
  bool close_requested;    /* mv_guest_close from inside a callback */
  mv_mapping maps[MV_MAX_MAPPINGS];   /* sorted by gpa */
  size_t nmaps;
  uint64_t map_gen;         /* bumped by every map and unmap */
  uint64_t slot_bits;       /* backend slots in use, one bit each */
  mv_trap_table io;        /* port space */
  mv_trap_table mem;       /* guest-physical space: mem and bell traps */
  int next_trap_id;
  mv_vcpu *vcpus[MV_MAX_VCPUS];
  int nvcpus;
  /* doorbell writes seen as exits, delivered before enter returns */
  struct { int trap_id; uint64_t addr; } bells[MV_BELL_QUEUE];
  int nbells;
  bool tracking;           /* snapshots exist: every mapping is tracked */
  uint64_t base_snapshot;  /* id of the snapshot memory last equalled, 0 if none */
  uint64_t last_restore_pages;
  bool timing;             /* time trap callbacks */
  mv_trace_fn trace;       /* NULL: tracing off */
  void *trace_cookie;
  struct mv_smp *smp;      /* the mv_guest_run in progress (smp.c), NULL outside one */
  bool threaded;           /* ... and its VCPUs run on threads of their own (kvm) */
  struct mv_rec *rec;      /* recording or replaying (record.h), or NULL */
  bool hooked;             /* rec, threaded, timing or trace: accesses take the general path */
};

/* Sets g->hooked after any of the four changed (record_run.c, smp.c,
 * stats.c): the exit path tests that one flag.  Atomic, as VCPU threads of
 * guest:run read it while a handler starts a trace. */
static inline void mv__guest_rehook(mv_guest *g) {
  bool on = g->rec || g->threaded || g->timing || __atomic_load_n(&g->trace, __ATOMIC_RELAXED);
  __atomic_store_n(&g->hooked, on, __ATOMIC_RELAXED);
}

const mv_mapping *mv__guest_find_mapping(const mv_guest *g, uint64_t gpa);

struct mv_vcpu {
  mv_vcpu_head head;       /* first: the embedder's pointer (mv_vcpu_user, moonvisor.h) */
  mv_guest *guest;         /* holds a reference while the VCPU lives */
  void *be_state;
  int id;
  bool destroyed;
  bool in_enter;           /* guards against enter from inside a callback */
  volatile sig_atomic_t kick_pending;
  volatile sig_atomic_t timed_out;  /* set by the timeout signal */
  unsigned debug;          /* MV_DEBUG_* */
  uint64_t hw_bp[MV_HW_BREAKPOINTS];   /* instruction breakpoints in DR0..DR3 */
  int nhw_bp;
  mv_exit *exit;           /* the caller's exit record during enter */
  uint64_t enter_start;    /* mv__now_ns() at enter when tracing, for an unwound one */
  mv_vcpu_stats stats;
  uint32_t pending_irq[8]; /* bitmap of vectors queued by mv_vcpu_interrupt */
  int npending_irq;
  uint64_t state_snap;     /* the snapshot whose VCPU state this one was last saved to or
                              loaded from (0: none); the backend knows what changed since */
  uint64_t icount;         /* instructions run, where the backend counts them (counts_instructions) */
  uint64_t stop_icount;    /* replay: when not 0, the run stops as if kicked once icount + 1 reaches it */
};

/* The real-time signal that kicks a VCPU thread (timer.c). */
int mv__kick_signal(void);
void mv__install_kick_signal(void);
/* Disarms the timeout of an enter left by a longjmp (timer.c). */
void mv__timer_unwound(mv_vcpu *cpu);

/* What mv__access tells the backend to do next. */
enum { MV_ACCESS_CONTINUE = 0, MV_ACCESS_STOP = 1 };

/* The one path from a guest IO/MMIO access to a trap callback and back.
 * On entry *exit describes the access (type, addr, size, write, data), and
 * `type` repeats its type (a constant where the backend knows it); for
 * reads *value receives the data to feed the guest.  Returns CONTINUE when
 * a trap consumed it, STOP when enter must return *exit to its caller. */
static inline int mv__access(mv_vcpu *cpu, mv_exit *exit, mv_exit_type type, uint64_t *value);
/* The same without a recorder: trap lookup and callback (record_run.c calls it). */
static inline int mv__access_traps(mv_vcpu *cpu, mv_exit *exit, uint64_t *value);
/* An access's value with every bit of its size set: what an empty bus reads. */
static inline uint64_t mv__size_ones(uint32_t size) {
  return size >= 8 ? UINT64_MAX : (UINT64_C(1) << (8 * size)) - 1;
}
/* The end of an access a trap callback took (vcpu.c, smp.c): not ok (the
 * handler failed, or asked for the guest's close) marks the exit failed,
 * reads all ones and stops; otherwise a read gets the answer cut to the
 * access's size. */
static inline int mv__access_answered(mv_exit *e, bool ok, uint64_t answer, uint64_t *value) {
  if (!ok) {
    e->handler_failed = true;
    if (!e->write) *value = e->data = UINT64_MAX;
    return MV_ACCESS_STOP;
  }
  if (!e->write) {
    answer &= mv__size_ones(e->size);
    *value = e->data = answer;   /* the one point where read data enters the guest */
  }
  return MV_ACCESS_CONTINUE;
}

/* record_run.c: hooks called only while g->rec is set.  Those returning int
 * give 0, or -EILSEQ when a replay diverges there (err filled). */
int mv__rec_access(mv_vcpu *cpu, mv_exit *exit, uint64_t *value);
int mv__rec_enter(mv_vcpu *cpu, mv_err *err);
int mv__rec_exit(mv_vcpu *cpu, mv_exit *exit, int r, mv_err *err);
int mv__rec_drain(mv_guest *g, mv_vcpu *cpu, mv_exit *failed);
bool mv__rec_no_timer(const mv_guest *g);
void mv__rec_deliver(mv_vcpu *cpu, int vector);
int mv__rec_hostw(mv_guest *g, uint64_t gpa, const void *src, uint64_t len, const char *what, mv_err *err);
int mv__rec_vmo_write(mv_vmo *vmo, uint64_t off, const void *src, uint64_t len, mv_err *err);
int mv__rec_regs(mv_vcpu *cpu, const mv_regs *regs, mv_err *err);
int mv__rec_sregs(mv_vcpu *cpu, const mv_sregs *s, mv_err *err);
int mv__rec_msr(mv_vcpu *cpu, uint32_t index, uint64_t value, mv_err *err);
int mv__rec_fpu(mv_vcpu *cpu, const mv_fpu *fpu, mv_err *err);
int mv__rec_cpuid(mv_vcpu *cpu, uint32_t leaf, uint32_t subleaf, const uint32_t regs[4], mv_err *err);
int mv__rec_irq(mv_vcpu *cpu, uint32_t vector, mv_err *err);
int mv__rec_irq_line(mv_guest *g, uint32_t line, int level, mv_err *err);
int mv__rec_map(mv_guest *g, uint64_t gpa, uint64_t size, unsigned flags, uint64_t offset, mv_vmo *vmo, mv_err *err);
int mv__rec_unmap(mv_guest *g, uint64_t gpa, mv_err *err);
void mv__rec_guest_closing(mv_guest *g);
/* Runs a trap's callback, counting it; stats.c times and traces it when asked
 * (`hooked` false: the caller knows g->hooked is clear, so neither is on). */
int mv__call_trap_timed(mv_vcpu *cpu, mv_trap *tr, mv_exit *exit, uint64_t *value);
static inline __attribute__((always_inline)) int mv__call_trap_as(mv_vcpu *c, mv_trap *tr, mv_exit *e,
                                                                  mv_exit_type type, uint64_t *value, bool hooked) {
  tr->calls++;
  c->stats.handled[type]++;
  if (hooked && __builtin_expect(c->guest->timing || c->guest->trace != NULL, 0))
    return mv__call_trap_timed(c, tr, e, value);
  return tr->fn(tr->cookie, c, e, value);
}
static inline int mv__call_trap(mv_vcpu *c, mv_trap *tr, mv_exit *e, uint64_t *value) {
  return mv__call_trap_as(c, tr, e, e->type, value, true);
}

/* vcpu.c: an access no callback takes here: a doorbell's, or one without a trap. */
int mv__access_untrapped(mv_vcpu *cpu, mv_trap *tr, mv_exit *exit, uint64_t *value);
int mv__smp_access(mv_vcpu *cpu, mv_exit *exit, uint64_t *value);
/* Trap lookup and callback.  `hooked` false: the caller knows g->hooked is
 * clear, so no VCPU threads, timing or trace, and the callback is called
 * directly.  e is c->exit.  After the call, the guest and the exit are read from c again
 * rather than kept across it (fewer registers saved around the call). */
static inline __attribute__((always_inline)) int mv__access_trap_path(mv_vcpu *c, mv_exit *e, mv_exit_type type,
                                                                      uint64_t *value, bool hooked) {
  mv_guest *g = c->guest;
  if (hooked && __builtin_expect(g->threaded, 0)) return mv__smp_access(c, e, value);   /* VCPU threads: smp.c */
  mv_trap *tr = mv__trap_find(type == MV_EXIT_IO ? &g->io : &g->mem, e->addr);
  if (__builtin_expect(!tr || tr->kind == MV_TRAP_BELL, 0)) return mv__access_untrapped(c, tr, e, value);
  /* what a read gets unless the handler answers: all ones, as from an empty bus;
   * the callback answers in *value, which mv__access_answered then cuts */
  *value = e->write ? 0 : mv__size_ones(e->size);
  e->trap_id = (uint32_t)tr->id;
  int r = mv__call_trap_as(c, tr, e, type, value, hooked);   /* tr may be gone now: the callback can remove traps */
  return mv__access_answered(c->exit, r != MV_TRAP_FAIL && !c->guest->close_requested, *value, value);
}
static inline __attribute__((always_inline)) int mv__access_traps(mv_vcpu *c, mv_exit *e, uint64_t *value) {
  return mv__access_trap_path(c, e, e->type, value, true);
}
/* vcpu.c: mv__access when g->hooked is set. */
int mv__access_hooked(mv_vcpu *cpu, mv_exit *exit, uint64_t *value);
static inline __attribute__((always_inline)) int mv__access(mv_vcpu *cpu, mv_exit *exit, mv_exit_type type,
                                                            uint64_t *value) {
  if (__builtin_expect(__atomic_load_n(&cpu->guest->hooked, __ATOMIC_RELAXED), 0))
    return mv__access_hooked(cpu, exit, value);
  return mv__access_trap_path(cpu, exit, type, value, false);
}
/* stats.c: counts (and traces) an exit enter returns. */
void mv__note_exit(mv_vcpu *cpu, const mv_exit *exit, uint64_t start_ns);
uint64_t mv__now_ns(void);

/* smp.c.  While a threaded mv_guest_run runs, the exit path's shared state
 * (trap tables and counters, the trace) is guarded by the run's mutex:
 * mv__access_traps hands over to mv__smp_access (above), mv__bells_drain
 * to mv__smp_bells_drain. */
int mv__smp_bells_drain(mv_guest *g, mv_vcpu *cpu, mv_exit *failed);
void mv__smp_lock(mv_guest *g);     /* no-ops unless g->threaded */
void mv__smp_unlock(mv_guest *g);
/* Why cpu may not be entered or have its state touched by the caller now:
 * it takes part in g's run and another thread runs it (kvm) or the run's
 * scheduler owns it (soft).  NULL when it may. */
const char *mv__smp_refuse(const mv_vcpu *cpu, bool entering);
/* A vector for a VCPU running on another thread: queued in its mailbox and
 * the VCPU kicked to take it.  False when cpu is not such a VCPU. */
bool mv__smp_post_interrupt(mv_vcpu *cpu, uint32_t vector);
/* What a soft-backend quantum's end looks like: a kick exit with this reason. */
#define MV_REASON_QUANTUM UINT64_C(0x4d55544e415551)

/* The highest-priority queued vector, removed from the queue, or -1. */
int mv__take_interrupt(mv_vcpu *cpu);
static inline bool mv__has_interrupt(const mv_vcpu *cpu) { return cpu->npending_irq > 0; }

struct mv_backend_ops {
  const char *name;
  int (*guest_create)(mv_guest *g, const mv_guest_opts *opts, mv_err *err);
  void (*guest_destroy)(mv_guest *g);
  int (*map)(mv_guest *g, const mv_mapping *m, mv_err *err);
  int (*unmap)(mv_guest *g, const mv_mapping *m, mv_err *err);
  /* ORs the guest-dirty bits of mapping m into bitmap and clears them. */
  int (*dirty_log)(mv_guest *g, const mv_mapping *m, uint64_t *bitmap, mv_err *err);
  /* Optional, for logs that are re-armed lazily (the KVM dirty ring): ORs
   * into maybe the pages of m the guest may have written since the last
   * call without a log entry.  With exact, every later write is logged. */
  int (*dirty_unlogged)(mv_guest *g, const mv_mapping *m, uint64_t *maybe, bool exact, mv_err *err);
  /* Starts logging guest writes to a mapping made without LOG_DIRTY. */
  int (*track)(mv_guest *g, const mv_mapping *m, mv_err *err);
  /* The VCPU state the registers do not cover (FPU, MSRs, LAPIC, events),
   * as an opaque blob of the backend's, for snapshots. */
  int (*vcpu_save)(mv_vcpu *cpu, void **blob, size_t *len, mv_err *err);
  int (*vcpu_load)(mv_vcpu *cpu, const void *blob, size_t len, mv_err *err);
  /* Optional: vcpu_load when the VCPU's state equalled this blob after its
   * last vcpu_save or vcpu_load: writes only what can have changed since. */
  int (*vcpu_load_changed)(mv_vcpu *cpu, const void *blob, size_t len, mv_err *err);
  /* Guest-wide device state (in-kernel irqchip, PIT, clock); optional. */
  int (*guest_save)(mv_guest *g, void **blob, size_t *len, mv_err *err);
  int (*guest_load)(mv_guest *g, const void *blob, size_t len, mv_err *err);
  /* Fast-path doorbell (kvm ioeventfd); may decline with 0 and leave bell_fd -1. */
  int (*bell_add)(mv_guest *g, mv_trap *t, mv_err *err);
  void (*bell_remove)(mv_guest *g, mv_trap *t);
  /* Number of doorbell writes the backend collected for t since last asked. */
  uint64_t (*bell_take)(mv_guest *g, mv_trap *t);
  int (*vcpu_create)(mv_vcpu *cpu, uint64_t entry, mv_err *err);
  void (*vcpu_destroy)(mv_vcpu *cpu);
  /* Runs the guest until something must go back to the caller of enter.
   * Calls mv__access for each IO/MMIO access.  Fills *cpu->exit. */
  int (*vcpu_run)(mv_vcpu *cpu, mv_err *err);
  void (*vcpu_kick)(mv_vcpu *cpu);   /* async-signal-safe */
  /* Optional: vcpu_run was left by a longjmp out of mv__access's callback
   * (mv_vcpu_enter_unwound); completes that access as a failed one. */
  void (*vcpu_unwound)(mv_vcpu *cpu);
  /* Applies cpu->debug and cpu->hw_bp; hw_bp may be NULL: no debug registers. */
  int (*set_debug)(mv_vcpu *cpu, unsigned flags, mv_err *err);
  bool hw_breakpoints;
  /* Once-breakpoints (mv_vcpu_set_once_breakpoints); NULL: not supported. */
  int (*set_once)(mv_vcpu *cpu, const uint64_t *addrs, size_t n, mv_err *err);
  void (*rearm_once)(mv_vcpu *cpu);
  int (*get_regs)(mv_vcpu *cpu, mv_regs *r, mv_err *err);
  int (*set_regs)(mv_vcpu *cpu, const mv_regs *r, mv_err *err);
  int (*get_sregs)(mv_vcpu *cpu, mv_sregs *s, mv_err *err);
  int (*set_sregs)(mv_vcpu *cpu, const mv_sregs *s, mv_err *err);
  int (*get_fpu)(mv_vcpu *cpu, mv_fpu *fpu, mv_err *err);
  int (*set_fpu)(mv_vcpu *cpu, const mv_fpu *fpu, mv_err *err);
  int (*set_cpuid)(mv_vcpu *cpu, uint32_t leaf, uint32_t subleaf, const uint32_t regs[4], mv_err *err);
  int (*irq)(mv_guest *g, uint32_t line, int level, mv_err *err);   /* optional */
  /* Optional: mv_vcpu_declare_sandbox (arguments checked). */
  int (*declare_sandbox)(mv_vcpu *cpu, const uint64_t (*ranges)[2], int nranges, const uint64_t *clean,
                         int nclean, mv_err *err);
  /* Optional: what mv_guest_get_mechanisms reports (without it: no sync
   * regs, writes logged by hooks). */
  void (*mechanisms)(const mv_guest *g, mv_guest_mechanisms *out);
  int (*get_msr)(mv_vcpu *cpu, uint32_t index, uint64_t *value, mv_err *err);
  int (*set_msr)(mv_vcpu *cpu, uint32_t index, uint64_t value, mv_err *err);
  /* Optional (soft): the next runs end after insns guest instructions with
   * a kick exit of reason MV_REASON_QUANTUM; 0 lifts the limit.  Without
   * it, mv_guest_run runs each VCPU on a thread of its own. */
  void (*set_budget)(mv_vcpu *cpu, uint64_t insns);
  /* Optional: delivers a vector now, from any thread (kvm with an in-kernel
   * irqchip: an MSI to the VCPU's local APIC).  1: delivered, 0: not this
   * way (mv_vcpu_interrupt queues it), < 0: an error. */
  int (*interrupt)(mv_vcpu *cpu, uint32_t vector, mv_err *err);
  /* Optional: the rip of the instruction making the access mv__access sees (else get_regs). */
  uint64_t (*access_rip)(mv_vcpu *cpu);
  bool counts_instructions;   /* keeps cpu->icount and honours cpu->stop_icount */
};

extern const mv_backend_ops mv__kvm_backend;
extern const mv_backend_ops mv__soft_backend;

#endif
