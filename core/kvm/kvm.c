/*
 * kvm.c - the KVM backend: /dev/kvm (opened once and cached), VM and VCPU
 * fds, memslots, ioeventfd doorbells, and the KVM_RUN loop that decodes
 * each exit and hands IO/MMIO accesses to mv__access.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <cpuid.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/mman.h>
#include <unistd.h>
#include "../internal.h"

/* Where KVM on Intel keeps its real-mode TSS (3 pages) and EPT identity map
 * (1 page): just below the BIOS area, where no guest RAM should go. */
#define KVM_IDENTITY_MAP_ADDR UINT64_C(0xfffbc000)
#define KVM_TSS_ADDR UINT64_C(0xfffbd000)
#define KVM_RESERVED_END UINT64_C(0xfffc0000)
#define SETTLE_MAX 64   /* extra KVM_RUNs allowed to finish a string IO we stopped in */

static int kvm_fd = -1;   /* the one process-wide cache the design allows */

static int kvm_open(mv_err *err) {
  if (kvm_fd >= 0) return kvm_fd;
  int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    if (e == ENOENT || e == ENODEV || e == ENXIO)
      return mv__fail(err, -e, "/dev/kvm is missing: this host offers no KVM (load kvm_intel or kvm_amd, "
                      "enable virtualization in the firmware), or use the software backend: mv.guest{ backend = \"soft\" } or MOONVISOR_BACKEND=soft");
    if (e == EACCES || e == EPERM)
      return mv__fail(err, -e, "/dev/kvm: permission denied: add your user to the 'kvm' group "
                      "(usermod -aG kvm $USER, then log in again) or run as root");
    return mv__fail(err, -e, "/dev/kvm: %s", strerror(e));
  }
  int v = ioctl(fd, KVM_GET_API_VERSION, 0);
  if (v != KVM_API_VERSION) {
    close(fd);
    return mv__fail(err, -ENOTSUP, "/dev/kvm: KVM API version %d, moonvisor needs %d", v, KVM_API_VERSION);
  }
  kvm_fd = fd;
  return fd;
}

int mv_kvm_api_version(mv_err *err) {
  int fd = kvm_open(err);
  if (fd < 0) return fd;
  int v = ioctl(fd, KVM_GET_API_VERSION, 0);
  return v < 0 ? mv__fail(err, -errno, "KVM_GET_API_VERSION: %s", strerror(errno)) : v;
}

int mv_kvm_check_cap(int id, mv_err *err) {
  int fd = kvm_open(err);
  if (fd < 0) return fd;
  int r = ioctl(fd, KVM_CHECK_EXTENSION, id);
  return r < 0 ? mv__fail(err, -errno, "KVM_CHECK_EXTENSION %d: %s", id, strerror(errno)) : r;
}

#include "kvm.h"

/* The answers of KVM_CHECK_EXTENSION for the few capabilities the backend
 * uses, asked once per process: they belong to the cached /dev/kvm fd. */
typedef struct cap_answer { int cap, value; } cap_answer;
static cap_answer cap_answers[8];
static int ncap_answers;

int kvm_cap(int cap) {
  for (int i = 0; i < ncap_answers; i++)
    if (cap_answers[i].cap == cap) return cap_answers[i].value;
  if (kvm_fd < 0) return -1;
  int v = ioctl(kvm_fd, KVM_CHECK_EXTENSION, cap);
  if (v < 0) v = 0;
  if (ncap_answers < (int)(sizeof cap_answers / sizeof cap_answers[0]))
    cap_answers[ncap_answers++] = (cap_answer){ cap, v };
  return v;
}

/* KVM on Intel needs a TSS and an identity-map page for real mode; on AMD
 * (SVM) both ioctls do nothing, so they are not made there. */
static bool needs_real_mode_pages(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return true;
  char vendor[13];
  memcpy(vendor, &b, 4);
  memcpy(vendor + 4, &d, 4);
  memcpy(vendor + 8, &c, 4);
  vendor[12] = '\0';
  return strcmp(vendor, "AuthenticAMD") != 0 && strcmp(vendor, "HygonGenuine") != 0;
}

/* {====================================================== guest */

static int kvm_guest_create(mv_guest *g, const mv_guest_opts *opts, mv_err *err) {
  int fd = kvm_open(err);
  if (fd < 0) return fd;
  kvm_guest *kg = calloc(1, sizeof *kg);
  if (!kg) return mv__fail(err, -ENOMEM, "guest: out of memory");
  kg->vm_fd = -1;
  int r;
  kg->run_size = ioctl(fd, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (kg->run_size <= 0) {
    r = mv__fail(err, -errno, "guest: KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
    goto fail;
  }
  kg->vm_fd = ioctl(fd, KVM_CREATE_VM, 0);
  if (kg->vm_fd < 0) {
    r = mv__fail(err, -errno, "guest: KVM_CREATE_VM: %s", strerror(errno));
    goto fail;
  }
  uint64_t ident = KVM_IDENTITY_MAP_ADDR;
  if (needs_real_mode_pages() && (ioctl(kg->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &ident) < 0 ||
                                  ioctl(kg->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)KVM_TSS_ADDR) < 0)) {
    r = mv__fail(err, -errno, "guest: KVM_SET_IDENTITY_MAP_ADDR/KVM_SET_TSS_ADDR: %s", strerror(errno));
    goto fail;
  }
  if (opts->irqchip) {
    struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
    if (ioctl(kg->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0 || ioctl(kg->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
      r = mv__fail(err, -errno, "guest: KVM_CREATE_IRQCHIP/KVM_CREATE_PIT2: %s", strerror(errno));
      goto fail;
    }
    kg->irqchip = true;
  }
  const char *env = getenv("MOONVISOR_SYNC_REGS");
  kg->sync_regs = !opts->no_sync_regs && !(env && strcmp(env, "0") == 0) &&
                  (kvm_cap(KVM_CAP_SYNC_REGS) & KVM_SYNC_ALL) == KVM_SYNC_ALL;
  g->be_state = kg;
  if ((r = kvm_dirty_setup(g, opts, err)) < 0) {   /* before any VCPU: KVM wants it so */
    g->be_state = NULL;
    goto fail;
  }
  return 0;
fail:
  if (kg->vm_fd >= 0) close(kg->vm_fd);
  free(kg);
  return r;
}

static void kvm_guest_destroy(mv_guest *g) {
  kvm_guest *kg = KG(g);
  if (!kg) return;
  close(kg->vm_fd);
  kvm_dirty_guest_fini(g);
  free(kg);
  g->be_state = NULL;
}

static void kvm_mechanisms(const mv_guest *g, mv_guest_mechanisms *out) {
  const kvm_guest *kg = g->be_state;
  out->sync_regs = kg->sync_regs;
  out->dirty_log = kg->ring_entries ? "ring" : "bitmap";
}

static int set_region(mv_guest *g, const mv_mapping *m, uint64_t size, mv_err *err) {
  struct kvm_userspace_memory_region region = {
    .slot = m->slot,
    .flags = (m->flags & MV_MAP_READONLY ? KVM_MEM_READONLY : 0) |
             (m->tracked ? KVM_MEM_LOG_DIRTY_PAGES : 0),
    .guest_phys_addr = m->gpa,
    .memory_size = size,
    .userspace_addr = (uint64_t)(uintptr_t)(m->vmo->mem + m->offset),
  };
  if (ioctl(KG(g)->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
    return mv__fail(err, -errno, "guest:%s: KVM_SET_USER_MEMORY_REGION at 0x%" PRIx64 ": %s",
                    size ? "map" : "unmap", m->gpa, strerror(errno));
  return 0;
}

static int kvm_map(mv_guest *g, const mv_mapping *m, mv_err *err) {
  if (m->gpa < KVM_RESERVED_END && KVM_IDENTITY_MAP_ADDR < m->gpa + m->size)
    return mv__fail(err, -EEXIST, "guest:map: range 0x%" PRIx64 "+0x%" PRIx64 " overlaps 0x%" PRIx64 "-0x%" PRIx64
                    ", reserved for KVM's TSS and identity map", m->gpa, m->size, KVM_IDENTITY_MAP_ADDR, KVM_RESERVED_END);
  int r = kvm_dirty_map(g, m, err);
  if (r < 0) return r;
  if ((r = set_region(g, m, m->size, err)) < 0) kvm_dirty_unmap(g, m);
  return r;
}

static int kvm_unmap(mv_guest *g, const mv_mapping *m, mv_err *err) {
  int r = set_region(g, m, 0, err);
  if (r == 0) kvm_dirty_unmap(g, m);
  return r;
}

static int kvm_track(mv_guest *g, const mv_mapping *m, mv_err *err) {
  mv_mapping t = *m;   /* the same slot again, now logging writes */
  t.tracked = true;
  return set_region(g, &t, t.size, err);
}

static int ioeventfd(mv_guest *g, mv_trap *t, uint32_t flags) {
  struct kvm_ioeventfd io = { .addr = t->addr, .len = 0, .fd = t->bell_fd, .flags = flags };
  return ioctl(KG(g)->vm_fd, KVM_IOEVENTFD, &io);
}

static int kvm_bell_add(mv_guest *g, mv_trap *t, mv_err *err) {
  if (kvm_cap(KVM_CAP_IOEVENTFD_ANY_LENGTH) <= 0) return 0;   /* exits still reach the bell, only slower */
  t->bell_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (t->bell_fd < 0) return mv__fail(err, -errno, "guest:trap: eventfd: %s", strerror(errno));
  if (ioeventfd(g, t, 0) < 0) {
    int e = errno;
    close(t->bell_fd);
    t->bell_fd = -1;
    return mv__fail(err, -e, "guest:trap: KVM_IOEVENTFD at 0x%" PRIx64 ": %s", t->addr, strerror(e));
  }
  return 0;
}

static void kvm_bell_remove(mv_guest *g, mv_trap *t) {
  if (t->bell_fd < 0) return;
  if (KG(g)) ioeventfd(g, t, KVM_IOEVENTFD_FLAG_DEASSIGN);
  close(t->bell_fd);
  t->bell_fd = -1;
}

static uint64_t kvm_bell_take(mv_guest *g, mv_trap *t) {
  (void)g;
  uint64_t n = 0;
  if (read(t->bell_fd, &n, sizeof n) != (ssize_t)sizeof n) return 0;
  return n;
}

/* {====================================================== VCPU */

#define CPUID_MAX 256

/* The topology the guest sees: initial APIC id = VCPU id (leaf 1 EBX[31:24],
 * the x2APIC id of leaf 0xb), as the in-kernel local APIC's id is. */
static void set_apic_id(struct kvm_cpuid2 *cp, int id) {
  for (uint32_t i = 0; i < cp->nent; i++) {
    struct kvm_cpuid_entry2 *e = &cp->entries[i];
    if (e->function == 1) e->ebx = (e->ebx & 0x00ffffffu) | (uint32_t)id << 24;
    if (e->function == 0xb || e->function == 0x1f) e->edx = (uint32_t)id;
  }
}

static int set_cpuid(kvm_vcpu *kv, int id, mv_err *err) {
  struct kvm_cpuid2 *cpuid = calloc(1, sizeof *cpuid + CPUID_MAX * sizeof(struct kvm_cpuid_entry2));
  if (!cpuid) return mv__fail(err, -ENOMEM, "guest:vcpu: out of memory");
  cpuid->nent = CPUID_MAX - 8;   /* room for leaves cpuid_set adds */
  int r = 0;
  if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid) < 0) {
    r = mv__fail(err, -errno, "guest:vcpu: KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
  } else {
    set_apic_id(cpuid, id);
    if (ioctl(kv->fd, KVM_SET_CPUID2, cpuid) < 0)
      r = mv__fail(err, -errno, "guest:vcpu: KVM_SET_CPUID2: %s", strerror(errno));
  }
  if (r < 0) free(cpuid);
  else kv->cpuid = cpuid;
  return r;
}

static int kvm_set_cpuid(mv_vcpu *c, uint32_t leaf, uint32_t subleaf, const uint32_t regs[4], mv_err *err) {
  kvm_vcpu *kv = KV(c);
  if (kv->ran) return mv__fail(err, -EBUSY, "vcpu:cpuid_set: the CPUID is fixed at the first enter: set it before");
  struct kvm_cpuid2 *cp = kv->cpuid;
  struct kvm_cpuid_entry2 *e = NULL;
  for (uint32_t i = 0; i < cp->nent && !e; i++)
    if (cp->entries[i].function == leaf &&
        (!(cp->entries[i].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || cp->entries[i].index == subleaf))
      e = &cp->entries[i];
  if (!e) {
    if (cp->nent == CPUID_MAX) return mv__fail(err, -ENOSPC, "vcpu:cpuid_set: too many CPUID leaves");
    e = &cp->entries[cp->nent++];
    *e = (struct kvm_cpuid_entry2){ .function = leaf, .index = subleaf,
                                    .flags = subleaf ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0 };
  }
  e->eax = regs[0]; e->ebx = regs[1]; e->ecx = regs[2]; e->edx = regs[3];
  int r = kvm_regs_flush(c, "vcpu:cpuid_set", err);   /* registers first, checked with the old CPUID */
  if (r < 0) return r;
  if (kv->sb) kvm_sandbox_declare(c, NULL, 0, NULL, 0, NULL);
  IOCTL_OR_FAIL(kv->fd, KVM_SET_CPUID2, cp, "vcpu:cpuid_set");
  return 0;
}

/* x87/SSE state through the XSAVE area's legacy (FXSAVE) region: KVM_GET_FPU
 * and KVM_SET_FPU leave MXCSR out (it read 0, writes were dropped), and
 * KVM_SET_FPU's registers did not reach the guest while the area's header
 * said x87/SSE were in their initial state. */
enum { FX_FCW = 0, FX_FSW = 2, FX_FTW = 4, FX_MXCSR = 24, FX_ST = 32, FX_XMM = 160, XSTATE_BV = 512 };

static int kvm_get_fpu(mv_vcpu *c, mv_fpu *o, mv_err *err) {
  struct kvm_xsave x;
  IOCTL_OR_FAIL(KV(c)->fd, KVM_GET_XSAVE, &x, "vcpu:fpu");
  const unsigned char *b = (const unsigned char *)x.region;
  memset(o, 0, sizeof *o);
  memcpy(&o->fcw, b + FX_FCW, 2);
  memcpy(&o->fsw, b + FX_FSW, 2);
  o->ftw = b[FX_FTW];
  memcpy(&o->mxcsr, b + FX_MXCSR, 4);
  for (int i = 0; i < 8; i++) memcpy(o->st[i], b + FX_ST + 16 * i, 10);
  memcpy(o->xmm, b + FX_XMM, sizeof o->xmm);
  return 0;
}

static int kvm_set_fpu(mv_vcpu *c, const mv_fpu *in, mv_err *err) {
  struct kvm_xsave x;
  IOCTL_OR_FAIL(KV(c)->fd, KVM_GET_XSAVE, &x, "vcpu:write_fpu");   /* keeps the last-instruction pointers */
  unsigned char *b = (unsigned char *)x.region;
  memcpy(b + FX_FCW, &in->fcw, 2);
  memcpy(b + FX_FSW, &in->fsw, 2);
  b[FX_FTW] = in->ftw;
  memcpy(b + FX_MXCSR, &in->mxcsr, 4);
  for (int i = 0; i < 8; i++) memcpy(b + FX_ST + 16 * i, in->st[i], 10);
  memcpy(b + FX_XMM, in->xmm, sizeof in->xmm);
  b[XSTATE_BV] |= 3;   /* x87 and SSE in use: XRSTOR loads these, not the initial state */
  KV(c)->touched |= KS_XSAVE;
  IOCTL_OR_FAIL(KV(c)->fd, KVM_SET_XSAVE, &x, "vcpu:write_fpu");
  return 0;
}

static int kvm_irq(mv_guest *g, uint32_t line, int level, mv_err *err) {
  if (!KG(g)->irqchip) return mv__fail(err, -ENOTSUP, "guest:irq: create the guest with irqchip = true");
  struct kvm_irq_level irq = { .irq = line, .level = level ? 1 : 0 };
  for (int i = 0; i < g->nvcpus; i++)   /* the line can reach a local APIC */
    if (g->vcpus[i] && !g->vcpus[i]->destroyed) KV(g->vcpus[i])->touched |= KS_LAPIC | KS_MP_STATE;
  IOCTL_OR_FAIL(KG(g)->vm_fd, KVM_IRQ_LINE, &irq, "guest:irq");
  return 0;
}

/* With the in-kernel irqchip, cpu:interrupt is an MSI to the VCPU's local
 * APIC (fixed delivery, physical destination = its APIC id, the VCPU id):
 * a VM ioctl, so it works from any thread while the VCPU runs. */
static int kvm_interrupt(mv_vcpu *c, uint32_t vector, mv_err *err) {
  if (!KG(c->guest)->irqchip) return 0;
  struct kvm_msi msi = { .address_lo = 0xfee00000u | (uint32_t)c->id << 12, .data = vector };
  if (!c->guest->threaded) KV(c)->touched |= KS_LAPIC | KS_MP_STATE;   /* (a run marks them itself) */
  int r = ioctl(KG(c->guest)->vm_fd, KVM_SIGNAL_MSI, &msi);
  if (r < 0) return mv__fail(err, -errno, "vcpu:interrupt: KVM_SIGNAL_MSI: %s", strerror(errno));
  if (r == 0)
    return mv__fail(err, -EAGAIN, "vcpu:interrupt: VCPU %d's local APIC did not take vector %" PRIu32
                    " (software-disabled?)", c->id, vector);
  return 1;
}

static int kvm_vcpu_create(mv_vcpu *c, uint64_t entry, mv_err *err) {
  kvm_guest *kg = KG(c->guest);
  kvm_vcpu *kv = calloc(1, sizeof *kv);
  if (!kv) return mv__fail(err, -ENOMEM, "guest:vcpu: out of memory");
  int r;
  kv->run = MAP_FAILED;
  kv->fd = -1;
  int max = kvm_cap(KVM_CAP_MAX_VCPUS);
  if (max > 0 && c->id >= max) {
    r = mv__fail(err, -ENOSPC, "guest:vcpu: VCPU %d is over this host's limit of %d VCPUs per guest (KVM_CAP_MAX_VCPUS)",
                 c->id, max);
    goto fail;
  }
  kv->fd = ioctl(kg->vm_fd, KVM_CREATE_VCPU, (unsigned long)c->id);
  if (kv->fd < 0) {
    r = mv__fail(err, -errno, "guest:vcpu: KVM_CREATE_VCPU %d: %s", c->id, strerror(errno));
    goto fail;
  }
  kv->run = mmap(NULL, (size_t)kg->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, kv->fd, 0);
  if (kv->run == MAP_FAILED) {
    r = mv__fail(err, -errno, "guest:vcpu: mmap of kvm_run: %s", strerror(errno));
    goto fail;
  }
  kv->sync = kg->sync_regs;
  kv->touched = KS_ALL;
  kv->run_touches = KS_XSAVE | KS_XCRS | KS_DEBUGREGS | KS_MSRS | (kg->irqchip ? KS_MP_STATE | KS_LAPIC : 0);
  c->be_state = kv;
  if ((r = set_cpuid(kv, c->id, err)) < 0 || (r = kvm_regs_init(c, entry, err)) < 0 || (r = kvm_dirty_vcpu_init(c, err)) < 0) {
    c->be_state = NULL;
    goto fail;
  }
  mv__install_kick_signal();
  return 0;
fail:
  if (kv->ring) munmap(kv->ring, kg->ring_entries * sizeof(struct kvm_dirty_gfn));
  if (kv->run != MAP_FAILED) munmap(kv->run, (size_t)kg->run_size);
  if (kv->fd >= 0) close(kv->fd);
  free(kv->cpuid);
  free(kv);
  return r;
}

static void kvm_vcpu_destroy(mv_vcpu *c) {
  kvm_vcpu *kv = KV(c);
  if (!kv) return;
  kvm_dirty_vcpu_fini(c);
  kvm_sandbox_free(kv);
  munmap(kv->run, (size_t)KG(c->guest)->run_size);
  close(kv->fd);
  free(kv->cpuid);
  free(kv);
  c->be_state = NULL;
}

/* Atomics where another thread (guest:run's, smp.c) or a signal handler meets the VCPU's own. */
#define ST(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define LD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)

static void kvm_vcpu_kick(mv_vcpu *c) {
  kvm_vcpu *kv = KV(c);
  if (!kv) return;
  ST(&kv->run->immediate_exit, 1);
  if (LD(&kv->running)) {
    pthread_t t = LD(&kv->thread);
    if (!pthread_equal(t, pthread_self())) pthread_kill(t, mv__kick_signal());
  }
}

/* {====================================================== KVM_RUN */

/* x86 hosts: little-endian.  The sizes KVM gives are 1, 2, 4 and 8; MMIO
 * may give others (up to 8). */
static uint64_t load_le(const uint8_t *p, uint32_t size) {
  uint8_t b1; uint16_t b2; uint32_t b4; uint64_t v = 0;
  switch (size) {
  case 1: memcpy(&b1, p, 1); return b1;
  case 2: memcpy(&b2, p, 2); return b2;
  case 4: memcpy(&b4, p, 4); return b4;
  default: memcpy(&v, p, size < 8 ? size : 8); return v;
  }
}

static void store_le(uint8_t *p, uint32_t size, uint64_t v) {
  switch (size) {
  case 1: *p = (uint8_t)v; return;
  case 2: { uint16_t b = (uint16_t)v; memcpy(p, &b, 2); return; }
  case 4: { uint32_t b = (uint32_t)v; memcpy(p, &b, 4); return; }
  default: memcpy(p, &v, size < 8 ? size : 8); return;
  }
}

/* Finishes the instruction of an exit we return to the caller, so registers
 * read afterwards are those after it (KVM completes IO/MMIO on re-entry). */
static void settle(kvm_vcpu *kv) {
  struct kvm_run *run = kv->run;
  for (int i = 0; i < SETTLE_MAX; i++) {
    ST(&run->immediate_exit, 1);
    int r = ioctl(kv->fd, KVM_RUN, 0);
    ST(&run->immediate_exit, 0);
    if (r < 0) return;   /* EINTR: done, nothing else ran */
    if (run->exit_reason == KVM_EXIT_IO && run->io.direction == KVM_EXIT_IO_IN)
      memset((uint8_t *)run + run->io.data_offset, 0xff, (size_t)run->io.size * run->io.count);
    else if (run->exit_reason == KVM_EXIT_MMIO && !run->mmio.is_write)
      memset(run->mmio.data, 0xff, sizeof run->mmio.data);
    else if (run->exit_reason != KVM_EXIT_IO && run->exit_reason != KVM_EXIT_MMIO)
      return;
  }
}

/* An IO access's data (size 1, 2 or 4) at p, with room for 4 bytes there:
 * one load and a mask instead of load_le's branches on the size. */
static inline uint64_t load_io(const uint8_t *p, uint32_t size) {
  uint32_t w;
  memcpy(&w, p, 4);
  return w & (UINT32_MAX >> (32 - 8 * size));
}

/* One access of an IO exit (element i of a string instruction's): the
 * exit's fields (enter zeroed the rest), the trap, a read's answer into
 * kvm_run's data.  `room`: 4 bytes can be read at p, as after a lone
 * in/out's data: KVM puts it at the start of the PIO page, the page after
 * struct kvm_run (KVM_PIO_PAGE_OFFSET), which the mapping includes. */
static inline __attribute__((always_inline)) int io_access(mv_vcpu *c, kvm_vcpu *kv, uint8_t *p, uint16_t port,
                                                           uint32_t size, bool write, uint32_t i, bool room) {
  mv_exit *e = c->exit;
  e->type = MV_EXIT_IO;
  e->addr = port;
  e->size = size;
  e->write = write;
  e->reason = KVM_EXIT_IO;
  e->data = !write ? 0 : room ? load_io(p, size) : load_le(p, size);
  uint64_t value = 0;
  kv->io_elem = i;
  int st = mv__access(c, e, MV_EXIT_IO, &value);
  if (!write) store_le(p, size, value);
  return st;
}

/* One handler call per element of a (string) IO exit. */
static int handle_io(mv_vcpu *c, kvm_vcpu *kv, struct kvm_run *run) {
  uint8_t *p = (uint8_t *)run + run->io.data_offset;
  bool write = run->io.direction == KVM_EXIT_IO_OUT;
  uint32_t size = run->io.size, count = run->io.count;
  uint16_t port = run->io.port;
  if (__builtin_expect(count == 1, 1)) return io_access(c, kv, p, port, size, write, 0, true);   /* in/out */
  for (uint32_t i = 0; i < count; i++, p += size) {
    if (io_access(c, kv, p, port, size, write, i, false) == MV_ACCESS_STOP) {
      if (!write) memset(p + size, 0xff, (size_t)size * (count - i - 1));
      return MV_ACCESS_STOP;
    }
  }
  return MV_ACCESS_CONTINUE;
}

static int handle_mmio(mv_vcpu *c, kvm_vcpu *kv) {
  struct kvm_run *run = kv->run;
  mv_exit *e = c->exit;   /* enter zeroed it; an access changes only these fields */
  e->type = MV_EXIT_MEM;
  e->addr = run->mmio.phys_addr;
  e->size = run->mmio.len;
  e->write = run->mmio.is_write;
  e->reason = KVM_EXIT_MMIO;
  e->data = e->write ? load_le(run->mmio.data, run->mmio.len) : 0;
  uint64_t value = 0;
  int st = mv__access(c, e, MV_EXIT_MEM, &value);
  if (!e->write) store_le(run->mmio.data, run->mmio.len, value);
  return st;
}

/* A trap callback left the run by a longjmp (mv_vcpu_enter_unwound): the
 * access reads as all ones, as after MV_TRAP_FAIL, and completes. */
static void kvm_vcpu_unwound(mv_vcpu *c) {
  kvm_vcpu *kv = KV(c);
  struct kvm_run *run = kv->run;
  kv->running = 0;
  kv->touched |= KS_DEBUGREGS | KS_XCRS;   /* the run's sandbox check was skipped */
  if (run->exit_reason == KVM_EXIT_IO && run->io.direction == KVM_EXIT_IO_IN && kv->io_elem < run->io.count)
    memset((uint8_t *)run + run->io.data_offset + (size_t)kv->io_elem * run->io.size, 0xff,
           (size_t)run->io.size * (run->io.count - kv->io_elem));
  else if (run->exit_reason == KVM_EXIT_MMIO && !run->mmio.is_write)
    memset(run->mmio.data, 0xff, run->mmio.len < 8 ? run->mmio.len : 8);
  settle(kv);
}

/* Without an in-kernel irqchip, queued vectors go in through KVM_INTERRUPT
 * when the guest can take one, asking for an interrupt-window exit otherwise.
 * The common case, nothing queued, is inline in the loop (kvm_vcpu_run). */
static __attribute__((noinline)) int inject_pending(mv_vcpu *c, kvm_vcpu *kv, mv_err *err) {
  struct kvm_run *run = kv->run;
  if (KG(c->guest)->irqchip) {
    run->request_interrupt_window = 0;
    return 0;
  }
  if (run->ready_for_interrupt_injection && run->if_flag) {
    int r = kvm_regs_flush(c, "vcpu:enter", err);   /* the events KVM_INTERRUPT adds to */
    if (r < 0) return r;
    struct kvm_interrupt irq = { .irq = (uint32_t)mv__take_interrupt(c) };
    IOCTL_OR_FAIL(kv->fd, KVM_INTERRUPT, &irq, "vcpu:enter");
  }
  run->request_interrupt_window = mv__has_interrupt(c);
  return 0;
}

static int exit_with(mv_vcpu *c, mv_exit_type type, uint64_t reason) {
  *c->exit = (mv_exit){ .type = type, .reason = reason };
  return 0;
}

/* Before a VCPU's first run, in a guest of several: CPUID leaf 1 gives their
 * count (EBX[23:16], with HTT) and leaf 0xb's package level too. */
static int set_cpu_count(mv_vcpu *c, kvm_vcpu *kv, mv_err *err) {
  int n = c->guest->nvcpus;
  if (n < 2) return 0;
  for (uint32_t i = 0; i < kv->cpuid->nent; i++) {
    struct kvm_cpuid_entry2 *e = &kv->cpuid->entries[i];
    if (e->function == 1) {
      e->ebx = (e->ebx & 0xff00ffffu) | (uint32_t)(n & 0xff) << 16;
      e->edx |= 1u << 28;
    }
    if (e->function == 0xb && e->index == 1) e->ebx = (uint32_t)n;
  }
  IOCTL_OR_FAIL(kv->fd, KVM_SET_CPUID2, kv->cpuid, "vcpu:enter");
  return 0;
}

/* KVM_RUN, the exit loop's one system call, without libc's variadic ioctl
 * wrapper (a third of the instructions the loop spends per exit outside the
 * handler).  0, or -errno on failure. */
static long run_ioctl(int fd) {
  long r;
  __asm__ volatile("syscall"
                   : "=a"(r)
                   : "0"((long)SYS_ioctl), "D"((long)fd), "S"((long)KVM_RUN), "d"(0L)
                   : "rcx", "r11", "memory");
  return r;
}

static int kvm_vcpu_run(mv_vcpu *c, mv_err *err) {
  kvm_vcpu *kv = KV(c);
  struct kvm_run *run = kv->run;
  if (!kv->ran) {
    int r = set_cpu_count(c, kv, err);
    if (r < 0) return r;
  }
  /* what the guest can change while it runs: in a sandbox, as long as it
   * keeps to it, neither the debug registers nor XCR0 (kvm_sandbox.c) */
  bool inside = kv->sb && kvm_sandbox_entry(c);
  kv->touched |= inside ? kv->run_touches & ~(unsigned)(KS_DEBUGREGS | KS_XCRS) : kv->run_touches;
  ST(&kv->thread, pthread_self());
  for (;;) {
    if (__builtin_expect(mv__has_interrupt(c), 0)) {
      int r = inject_pending(c, kv, err);
      if (r < 0) return r;
    } else {
      run->request_interrupt_window = 0;
    }
    ST(&kv->running, 1);
    if (LD(&c->kick_pending)) ST(&run->immediate_exit, 1);   /* a kick that raced the check in enter */
    long rr = run_ioctl(kv->fd);
    ST(&kv->running, 0);
    kv->ran = true;
    if (inside && !kvm_sandbox_exit_ok(kv)) {
      inside = false;
      kv->touched |= KS_DEBUGREGS | KS_XCRS;
    }
    if (rr < 0) {
      if (rr != -EINTR && rr != -EAGAIN)
        return mv__fail(err, (int)rr, "vcpu:enter: KVM_RUN: %s", strerror((int)-rr));
      if (__atomic_exchange_n(&c->kick_pending, 0, __ATOMIC_ACQ_REL)) {
        ST(&run->immediate_exit, 0);
        return exit_with(c, MV_EXIT_KICK, KVM_EXIT_INTR);
      }
      ST(&run->immediate_exit, 0);   /* a kick consumed before this run left it set */
      continue;                  /* or some other signal: resume */
    }
    if (__builtin_expect(run->exit_reason == KVM_EXIT_IO, 1)) {   /* the common exit, before the switch's table */
      if (handle_io(c, kv, run) == MV_ACCESS_STOP) {
        settle(kv);
        return 0;
      }
      continue;
    }
    switch (run->exit_reason) {
    case KVM_EXIT_MMIO:
      if (handle_mmio(c, kv) == MV_ACCESS_STOP) {
        settle(kv);
        return 0;
      }
      break;
    case KVM_EXIT_IRQ_WINDOW_OPEN:
    case KVM_EXIT_INTR:
      break;
    case KVM_EXIT_DIRTY_RING_FULL: {
      mv__smp_lock(c->guest);   /* it harvests every VCPU's ring */
      int r = kvm_dirty_ring_full(c->guest, err);
      mv__smp_unlock(c->guest);
      if (r < 0) return r;
      break;
    }
    case KVM_EXIT_HLT:
      return exit_with(c, MV_EXIT_HLT, KVM_EXIT_HLT);
    case KVM_EXIT_SHUTDOWN:   /* KVM on AMD resets the VCPU (INIT) after a shutdown */
      kv->touched = KS_ALL;
      return exit_with(c, MV_EXIT_SHUTDOWN, KVM_EXIT_SHUTDOWN);
    case KVM_EXIT_FAIL_ENTRY:
      kv->touched = KS_ALL;
      exit_with(c, MV_EXIT_FAIL_ENTRY, KVM_EXIT_FAIL_ENTRY);
      c->exit->detail[0] = run->fail_entry.hardware_entry_failure_reason;
      c->exit->detail[1] = run->fail_entry.cpu;
      return 0;
    case KVM_EXIT_INTERNAL_ERROR:
      kv->touched = KS_ALL;
      exit_with(c, MV_EXIT_INTERNAL_ERROR, KVM_EXIT_INTERNAL_ERROR);
      c->exit->detail[0] = run->internal.suberror;
      c->exit->detail[1] = run->internal.ndata;
      c->exit->detail[2] = run->internal.ndata ? run->internal.data[0] : 0;
      return 0;
    case KVM_EXIT_DEBUG:
      exit_with(c, MV_EXIT_DEBUG, KVM_EXIT_DEBUG);
      c->exit->rip = run->debug.arch.pc;
      c->exit->detail[0] = run->debug.arch.exception;
      c->exit->detail[1] = run->debug.arch.dr6;
      c->exit->detail[2] = run->debug.arch.dr7;
      return 0;
    case KVM_EXIT_SYSTEM_EVENT:
      kv->touched = KS_ALL;
      exit_with(c, MV_EXIT_SYSTEM_EVENT, KVM_EXIT_SYSTEM_EVENT);
      c->exit->detail[0] = run->system_event.type;
      return 0;
    default:
      kv->touched = KS_ALL;
      return exit_with(c, MV_EXIT_UNKNOWN, run->exit_reason);
    }
  }
}

static int kvm_set_debug(mv_vcpu *c, unsigned flags, mv_err *err) {
  int r = kvm_regs_flush(c, "vcpu:debug", err);   /* KVM reads rip and rflags here */
  if (r < 0) return r;
  struct kvm_guest_debug dbg = { .control = 0 };
  if (flags || c->nhw_bp)
    dbg.control = KVM_GUESTDBG_ENABLE | (flags & MV_DEBUG_SINGLESTEP ? KVM_GUESTDBG_SINGLESTEP : 0) |
                  (flags & MV_DEBUG_SW_BREAKPOINTS ? KVM_GUESTDBG_USE_SW_BP : 0);
  if (c->nhw_bp) {
    dbg.control |= KVM_GUESTDBG_USE_HW_BP;
    for (int i = 0; i < c->nhw_bp; i++) {
      dbg.arch.debugreg[i] = c->hw_bp[i];
      dbg.arch.debugreg[7] |= UINT64_C(2) << (2 * i);   /* Gi: enabled, R/W = 00 (execute), LEN = 00 */
    }
    dbg.arch.debugreg[7] |= 1u << 10;                    /* bit 10 reads as 1 */
  }
  IOCTL_OR_FAIL(KV(c)->fd, KVM_SET_GUEST_DEBUG, &dbg, "vcpu:debug");
  return 0;
}

/* {====================================================== MSRs */

/* EFER, FS/GS base and the APIC base are special registers too: what is
 * waiting in the register cache goes to KVM before an MSR is read or
 * written, and the cache is read again after a write. */
static int kvm_get_msr(mv_vcpu *c, uint32_t index, uint64_t *value, mv_err *err) {
  int r = kvm_regs_flush(c, "vcpu:msr", err);
  if (r < 0) return r;
  struct { struct kvm_msrs hdr; struct kvm_msr_entry e; } m = { .hdr.nmsrs = 1, .e.index = index };
  if (ioctl(KV(c)->fd, KVM_GET_MSRS, &m) != 1)
    return mv__fail(err, -EINVAL, "vcpu:msr: KVM_GET_MSRS: MSR 0x%" PRIx32 " cannot be read", index);
  *value = m.e.data;
  return 0;
}

static int kvm_set_msr(mv_vcpu *c, uint32_t index, uint64_t value, mv_err *err) {
  int r = kvm_regs_flush(c, "vcpu:msr", err);
  if (r < 0) return r;
  struct { struct kvm_msrs hdr; struct kvm_msr_entry e; } m = { .hdr.nmsrs = 1, .e = { .index = index, .data = value } };
  KV(c)->touched |= KS_MSRS;
  if (KV(c)->sb) kvm_sandbox_declare(c, NULL, 0, NULL, 0, NULL);   /* (it may move the syscall entry) */
  if (ioctl(KV(c)->fd, KVM_SET_MSRS, &m) != 1)
    return mv__fail(err, -EINVAL, "vcpu:msr: KVM_SET_MSRS: MSR 0x%" PRIx32 " = 0x%" PRIx64 " refused", index, value);
  return kvm_regs_refetch(c, "vcpu:msr", err);
}

const mv_backend_ops mv__kvm_backend = {
  .name = "kvm",
  .guest_create = kvm_guest_create, .guest_destroy = kvm_guest_destroy,
  .map = kvm_map, .unmap = kvm_unmap, .dirty_log = kvm_dirty_log, .dirty_unlogged = kvm_dirty_unlogged,
  .track = kvm_track, .vcpu_save = kvm_vcpu_save, .vcpu_load = kvm_vcpu_load, .vcpu_load_changed = kvm_vcpu_load_changed,
  .guest_save = kvm_guest_save, .guest_load = kvm_guest_load,
  .bell_add = kvm_bell_add, .bell_remove = kvm_bell_remove, .bell_take = kvm_bell_take,
  .vcpu_create = kvm_vcpu_create, .vcpu_destroy = kvm_vcpu_destroy,
  .vcpu_run = kvm_vcpu_run, .vcpu_kick = kvm_vcpu_kick, .vcpu_unwound = kvm_vcpu_unwound, .set_debug = kvm_set_debug, .hw_breakpoints = true,
  .get_regs = kvm_get_regs, .set_regs = kvm_set_regs,
  .get_sregs = kvm_get_sregs, .set_sregs = kvm_set_sregs,
  .get_msr = kvm_get_msr, .set_msr = kvm_set_msr, .mechanisms = kvm_mechanisms,
  .declare_sandbox = kvm_sandbox_declare,
  .get_fpu = kvm_get_fpu, .set_fpu = kvm_set_fpu, .set_cpuid = kvm_set_cpuid, .irq = kvm_irq,
  .interrupt = kvm_interrupt,
};
