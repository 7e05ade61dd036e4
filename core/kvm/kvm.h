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

typedef struct kvm_guest {
  int vm_fd;
  int run_size;          /* KVM_GET_VCPU_MMAP_SIZE */
  bool irqchip;
  bool sync_regs;        /* its VCPUs keep registers in kvm_run (KVM_CAP_SYNC_REGS) */
} kvm_guest;

/* What KVM_CHECK_EXTENSION said on /dev/kvm, asked once per process with
 * the fd (part of the KVM fd cache): < 0 until asked. */
int kvm_cap(int cap);

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
} kvm_vcpu;

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

int kvm_vcpu_save(mv_vcpu *c, void **out, size_t *len, mv_err *err);
int kvm_vcpu_load(mv_vcpu *c, const void *blob, size_t len, mv_err *err);
int kvm_guest_save(mv_guest *g, void **out, size_t *len, mv_err *err);
int kvm_guest_load(mv_guest *g, const void *blob, size_t len, mv_err *err);

#endif
