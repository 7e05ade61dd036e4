/*
 * kvm.h - what the KVM backend's files share: kvm.c (VM, memslots,
 * doorbells, VCPUs, the KVM_RUN loop, registers) and kvm_state.c (the
 * VCPU and device state snapshots keep beyond the registers).
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
  bool any_length_ioeventfd;
} kvm_guest;

typedef struct kvm_vcpu {
  int fd;
  struct kvm_cpuid2 *cpuid;          /* what KVM_SET_CPUID2 got, for cpuid_set */
  bool ran;                          /* KVM_RUN happened: the CPUID is fixed */
  struct kvm_run *run;
  pthread_t thread;                  /* valid while running */
  volatile sig_atomic_t running;
} kvm_vcpu;

static inline kvm_guest *KG(mv_guest *g) { return g->be_state; }
static inline kvm_vcpu *KV(mv_vcpu *c) { return c->be_state; }

int kvm_vcpu_save(mv_vcpu *c, void **out, size_t *len, mv_err *err);
int kvm_vcpu_load(mv_vcpu *c, const void *blob, size_t len, mv_err *err);
int kvm_guest_save(mv_guest *g, void **out, size_t *len, mv_err *err);
int kvm_guest_load(mv_guest *g, const void *blob, size_t len, mv_err *err);

#endif
