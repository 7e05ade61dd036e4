/*
 * kvm.h - what the KVM backend's files share: kvm.c (VM, memslots,
 * doorbells, VCPUs, the KVM_RUN loop), kvm_regs.c (registers, special
 * registers and events: the kvm_run sync-regs cache or ioctls) and
 * kvm_state.c (the VCPU and device state snapshots keep beyond them).
 */
#ifndef MV_KVM_H
#define MV_KVM_H

#include <errno.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include "../internal.h"

/* One error per failing ioctl, naming it. */
#define IOCTL_OR_FAIL(fd, req, arg, what)                                            \
  do {                                                                               \
    if (ioctl((fd), (req), (arg)) < 0)                                               \
      return mv__fail(err, -errno, "%s: " #req ": %s", (what), strerror(errno));    \
  } while (0)

/* A memslot's pages as the dirty ring reported them (kvm_dirty.c). */
typedef struct kvm_dirty_slot {
  uint64_t npages;
  uint64_t *logged;      /* harvested, not yet handed to dirty.c */
  uint64_t *sticky;      /* harvested since the last re-protection: written again unlogged, maybe */
  uint64_t *maybe;       /* were sticky when re-protected, not yet handed to dirty.c */
} kvm_dirty_slot;

typedef struct kvm_guest {
  int vm_fd;
  int run_size;          /* KVM_GET_VCPU_MMAP_SIZE */
  bool irqchip;
  bool sync_regs;        /* its VCPUs keep registers in kvm_run (KVM_CAP_SYNC_REGS) */
  uint32_t ring_entries; /* per-VCPU dirty ring size, 0: KVM_GET_DIRTY_LOG */
  uint64_t nsticky;      /* sticky pages, all slots */
  kvm_dirty_slot slots[MV_MAX_MAPPINGS];
} kvm_guest;

/* What KVM_CHECK_EXTENSION said on /dev/kvm, asked once per process with
 * the fd (part of the KVM fd cache): < 0 until asked. */
int kvm_cap(int cap);

/* A VCPU declared a sandbox (kvm_sandbox.c). */
typedef struct kvm_sandbox {
  uint64_t ranges[16][2];            /* guest-physical, whole pages */
  int nranges;
  uint64_t clean[16];                /* linear addresses of clean CPL 0 exits */
  int nclean;
  struct kvm_sregs frame;            /* the special registers declared with */
  unsigned char *content;            /* what the ranges held when declared */
  bool verified;                     /* they hold it, nothing wrote them since it was checked */
  bool mismatch;                     /* checked since the last snapshot or restore: they do not */
  bool last_written;                 /* the ranges were written in the last interval */
  bool dr7_known;                    /* dr7 is DR7 (it cannot change inside) */
  uint64_t dr7;
  bool sealed;                       /* the declared content keeps ring 3 off the ranges (kvm_seal.c)
                                        and no other mapping shows their pages */
  bool tlb_clean;                    /* every run of the VCPU started with the ranges as declared, so
                                        no translation from other tables can be cached */
  uint64_t map_gen;                  /* the guest's mappings when declared */
  struct mv_vmo *vmos[16];           /* the VMOs behind the ranges (while map_gen holds) */
  uint64_t vmo_maps[16];             /* ... how often each had been mapped then */
  int nvmos;
  uint64_t run_mark;                 /* their host writes to the ranges when the last run started */
} kvm_sandbox;

typedef struct kvm_vcpu {
  int fd;
  struct kvm_cpuid2 *cpuid;          /* what KVM_SET_CPUID2 got, for cpuid_set */
  bool ran;                          /* KVM_RUN happened: the CPUID is fixed */
  struct kvm_run *run;
  pthread_t thread;                  /* valid while running */
  volatile sig_atomic_t running;
  bool sync;                         /* run->s.regs holds regs, sregs and events (KVM_CAP_SYNC_REGS):
                                        KVM fills it at every exit, takes what run->kvm_dirty_regs
                                        marks at the next KVM_RUN */
  struct kvm_dirty_gfn *ring;        /* its dirty ring, or NULL */
  uint32_t ring_next;                /* the next entry to harvest */
  unsigned touched;                  /* KS_* classes that may have changed since the last
                                        snapshot save or load (kvm_state.c) */
  unsigned run_touches;              /* the classes a run of the guest can change */
  kvm_sandbox *sb;                   /* mv_vcpu_declare_sandbox, or NULL */
  uint32_t io_elem;                  /* the element of the IO exit being handled (string IO) */
} kvm_vcpu;

/* The state classes a snapshot keeps beyond registers, segments and events. */
enum {
  KS_XSAVE = 1u << 0, KS_XCRS = 1u << 1, KS_DEBUGREGS = 1u << 2, KS_MP_STATE = 1u << 3,
  KS_MSRS = 1u << 4, KS_LAPIC = 1u << 5, KS_ALL = (1u << 6) - 1,
};

static inline kvm_guest *KG(mv_guest *g) { return g->be_state; }
static inline kvm_vcpu *KV(mv_vcpu *c) { return c->be_state; }

/* kvm_regs.c.  With sync regs, reads come from kvm_run and writes go into
 * it, marked dirty, for the next KVM_RUN: no ioctl.  Without, each is an
 * ioctl (KVM_GET/SET_REGS, _SREGS, _VCPU_EVENTS). */
#define KVM_SYNC_ALL (KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS | KVM_SYNC_X86_EVENTS)
int kvm_regs_init(mv_vcpu *c, uint64_t entry, mv_err *err);   /* flat real mode at entry */
int kvm_get_regs(mv_vcpu *c, mv_regs *r, mv_err *err);
int kvm_set_regs(mv_vcpu *c, const mv_regs *r, mv_err *err);
int kvm_get_sregs(mv_vcpu *c, mv_sregs *s, mv_err *err);
int kvm_set_sregs(mv_vcpu *c, const mv_sregs *s, mv_err *err);
int kvm_get_events(mv_vcpu *c, struct kvm_vcpu_events *e, mv_err *err);
int kvm_set_events(mv_vcpu *c, const struct kvm_vcpu_events *e, mv_err *err);
/* Hands what is marked dirty to KVM by ioctls now: before an ioctl that
 * reads or changes the same state (MSRs, guest debug, KVM_INTERRUPT, ...). */
int kvm_regs_flush(mv_vcpu *c, const char *what, mv_err *err);
/* Reads the special registers again (after an MSR write that can change them). */
int kvm_regs_refetch(mv_vcpu *c, const char *what, mv_err *err);

/* kvm_dirty.c */
int kvm_dirty_setup(mv_guest *g, const mv_guest_opts *opts, mv_err *err);
int kvm_dirty_vcpu_init(mv_vcpu *c, mv_err *err);
void kvm_dirty_vcpu_fini(mv_vcpu *c);
int kvm_dirty_map(mv_guest *g, const mv_mapping *m, mv_err *err);
void kvm_dirty_unmap(mv_guest *g, const mv_mapping *m);
void kvm_dirty_guest_fini(mv_guest *g);
int kvm_dirty_ring_full(mv_guest *g, mv_err *err);   /* KVM_EXIT_DIRTY_RING_FULL */
int kvm_dirty_log(mv_guest *g, const mv_mapping *m, uint64_t *bitmap, mv_err *err);
int kvm_dirty_unlogged(mv_guest *g, const mv_mapping *m, uint64_t *maybe, bool exact, mv_err *err);

/* kvm_seal.c */
bool kvm_seal_proved(const kvm_sandbox *sb);

/* kvm_sandbox.c */
int kvm_sandbox_declare(mv_vcpu *c, const uint64_t (*ranges)[2], int nranges, const uint64_t *clean, int nclean,
                        mv_err *err);
void kvm_sandbox_free(kvm_vcpu *kv);
bool kvm_sandbox_entry(mv_vcpu *c);
bool kvm_sandbox_exit_ok(kvm_vcpu *kv);
/* At a snapshot (full = false) or restore: the classes the runs since may
 * have touched beyond kv->touched; DR7 as it is now. */
unsigned kvm_sandbox_boundary(mv_vcpu *c, uint64_t dr7, bool full);
/* kvm_dirty.c: re-protects every page read from the rings (one ioctl). */
int kvm_dirty_rearm(mv_guest *g, mv_err *err);

int kvm_vcpu_load_changed(mv_vcpu *c, const void *blob, size_t len, mv_err *err);
int kvm_vcpu_save(mv_vcpu *c, void **out, size_t *len, mv_err *err);
int kvm_vcpu_load(mv_vcpu *c, const void *blob, size_t len, mv_err *err);
int kvm_guest_save(mv_guest *g, void **out, size_t *len, mv_err *err);
int kvm_guest_load(mv_guest *g, const void *blob, size_t len, mv_err *err);

#endif
