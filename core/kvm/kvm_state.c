/*
 * kvm_state.c - the VCPU and device state a snapshot keeps on the KVM
 * backend beyond the registers: XSAVE, XCRs, pending events, debug
 * registers, MP state, the MSRs listed below and the LAPIC; guest-wide the
 * in-kernel PIC/IOAPIC, the PIT and the clock.  A restore into the VCPU
 * whose state last equalled the snapshot's writes only the classes (KS_*)
 * marked in kv->touched since: a run of the guest marks what the guest can
 * change (everything but MP state and LAPIC without an in-kernel irqchip),
 * host writes (cpu:write_fpu, cpu:msr, g:irq) mark theirs, and an exit
 * after which KVM may have reset the VCPU (shutdown, ...) marks all.
 */
#include <stdlib.h>
#include "kvm.h"

/* MSRs a snapshot keeps besides EFER (in sregs): syscall/sysenter entry,
 * the kernel GS base, TSC, PAT, misc enable. */
static const uint32_t saved_msrs[] = { 0x10, 0x174, 0x175, 0x176, 0x1a0, 0x277, 0xc0000081,
                                       0xc0000082, 0xc0000083, 0xc0000084, 0xc0000102, 0xc0000103 };
#define NSAVED_MSRS (sizeof saved_msrs / sizeof saved_msrs[0])

typedef struct msr_list { struct kvm_msrs hdr; struct kvm_msr_entry e[NSAVED_MSRS]; } msr_list;

typedef struct kvm_blob {
  struct kvm_xsave xsave;
  struct kvm_vcpu_events events;
  struct kvm_debugregs debugregs;
  struct kvm_xcrs xcrs;
  struct kvm_mp_state mp_state;
  struct kvm_lapic_state lapic;
  uint32_t has_lapic, nmsrs;
  msr_list msrs;
} kvm_blob;

int kvm_vcpu_save(mv_vcpu *c, void **out, size_t *len, mv_err *err) {
  int fd = KV(c)->fd;
  kvm_blob *b = calloc(1, sizeof *b);
  if (!b) return mv__fail(err, -ENOMEM, "guest:snapshot: out of memory");
  int r = -EIO;
  if ((r = kvm_get_events(c, &b->events, err)) < 0) goto fail;
  if (ioctl(fd, KVM_GET_XSAVE, &b->xsave) < 0 ||
      ioctl(fd, KVM_GET_DEBUGREGS, &b->debugregs) < 0 || ioctl(fd, KVM_GET_XCRS, &b->xcrs) < 0 ||
      ioctl(fd, KVM_GET_MP_STATE, &b->mp_state) < 0) {
    r = mv__fail(err, -errno, "guest:snapshot: KVM_GET_XSAVE/DEBUGREGS/XCRS/MP_STATE: %s", strerror(errno));
    goto fail;
  }
  if (KG(c->guest)->irqchip) {
    if (ioctl(fd, KVM_GET_LAPIC, &b->lapic) < 0) {
      r = mv__fail(err, -errno, "guest:snapshot: KVM_GET_LAPIC: %s", strerror(errno));
      goto fail;
    }
    b->has_lapic = 1;
  }
  b->msrs.hdr.nmsrs = NSAVED_MSRS;
  for (size_t i = 0; i < NSAVED_MSRS; i++) b->msrs.e[i].index = saved_msrs[i];
  int n = ioctl(fd, KVM_GET_MSRS, &b->msrs);
  b->nmsrs = n > 0 ? (uint32_t)n : 0;   /* those the host knows, in order */
  kvm_sandbox_boundary(c, b->debugregs.dr7, false);
  KV(c)->touched = 0;                   /* the VCPU equals this blob now */
  *out = b;
  *len = sizeof *b;
  return 0;
fail:
  free(b);
  return r;
}

/* Writes the classes in `which` of blob b; registers, segments and events
 * go into the register cache (kvm_regs.c) for the next run. */
static int load(mv_vcpu *c, const void *blob, size_t len, unsigned which, mv_err *err) {
  if (len != sizeof(kvm_blob)) return mv__fail(err, -EINVAL, "guest:restore: VCPU state of %zu bytes, expected %zu", len, sizeof(kvm_blob));
  kvm_vcpu *kv = KV(c);
  int fd = kv->fd, r;
  const kvm_blob *b = blob;
  kv->touched = KS_ALL;   /* until all of it is in */
  if (which & KS_XSAVE) {
    /* A component in its init state is not stored, and KVM then leaves
     * MXCSR as it is: the x87 and SSE parts go in as values (KVM's copy
     * holds the init values there). */
    struct kvm_xsave xs = b->xsave;
    uint64_t bv;
    memcpy(&bv, (uint8_t *)xs.region + 512, 8);
    bv |= 3;
    memcpy((uint8_t *)xs.region + 512, &bv, 8);
    if (ioctl(fd, KVM_SET_XSAVE, &xs) < 0)
      return mv__fail(err, -errno, "guest:restore: KVM_SET_XSAVE: %s", strerror(errno));
  }
  if ((which & KS_XCRS) && ioctl(fd, KVM_SET_XCRS, &b->xcrs) < 0)
    return mv__fail(err, -errno, "guest:restore: KVM_SET_XCRS: %s", strerror(errno));
  struct kvm_vcpu_events events = b->events;
  events.flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR | KVM_VCPUEVENT_VALID_SHADOW;
  if ((r = kvm_set_events(c, &events, err)) < 0) return r;
  if (((which & KS_DEBUGREGS) && ioctl(fd, KVM_SET_DEBUGREGS, &b->debugregs) < 0) ||
      ((which & KS_MP_STATE) && ioctl(fd, KVM_SET_MP_STATE, &b->mp_state) < 0))
    return mv__fail(err, -errno, "guest:restore: KVM_SET_DEBUGREGS/MP_STATE: %s", strerror(errno));
  if (which & KS_MSRS) {
    msr_list msrs = b->msrs;
    msrs.hdr.nmsrs = b->nmsrs;
    if (ioctl(fd, KVM_SET_MSRS, &msrs) < 0)
      return mv__fail(err, -errno, "guest:restore: KVM_SET_MSRS: %s", strerror(errno));
  }
  if ((which & KS_LAPIC) && b->has_lapic &&
      ((r = kvm_regs_flush(c, "guest:restore", err)) < 0 ||   /* the APIC base first */
       ioctl(fd, KVM_SET_LAPIC, &b->lapic) < 0))
    return r < 0 ? r : mv__fail(err, -errno, "guest:restore: KVM_SET_LAPIC: %s", strerror(errno));
  kv->touched = 0;
  return 0;
}

int kvm_vcpu_load(mv_vcpu *c, const void *blob, size_t len, mv_err *err) {
  if (len == sizeof(kvm_blob)) kvm_sandbox_boundary(c, ((const kvm_blob *)blob)->debugregs.dr7, true);
  return load(c, blob, len, KS_ALL, err);
}

/* The VCPU was last saved to or loaded from this blob: only the classes
 * the host or the guest may have changed since go back (for a sandbox, the
 * runs that kept to it did not change the debug registers and XCR0).  The
 * MSRs always do: the TSC among them moves with time. */
int kvm_vcpu_load_changed(mv_vcpu *c, const void *blob, size_t len, mv_err *err) {
  unsigned more = len == sizeof(kvm_blob) ? kvm_sandbox_boundary(c, ((const kvm_blob *)blob)->debugregs.dr7, false) : 0;
  return load(c, blob, len, KV(c)->touched | more | KS_MSRS, err);
}

typedef struct kvm_guest_blob {
  struct kvm_irqchip chips[3];   /* PIC master, PIC slave, IOAPIC */
  struct kvm_pit_state2 pit;
  struct kvm_clock_data clock;
} kvm_guest_blob;

int kvm_guest_save(mv_guest *g, void **out, size_t *len, mv_err *err) {
  *out = NULL;
  *len = 0;
  if (!KG(g)->irqchip) return 0;   /* nothing guest-wide without the in-kernel devices */
  kvm_guest_blob *b = calloc(1, sizeof *b);
  if (!b) return mv__fail(err, -ENOMEM, "guest:snapshot: out of memory");
  int fd = KG(g)->vm_fd;
  for (int i = 0; i < 3; i++) b->chips[i].chip_id = (uint32_t)i;
  if (ioctl(fd, KVM_GET_IRQCHIP, &b->chips[0]) < 0 || ioctl(fd, KVM_GET_IRQCHIP, &b->chips[1]) < 0 ||
      ioctl(fd, KVM_GET_IRQCHIP, &b->chips[2]) < 0 || ioctl(fd, KVM_GET_PIT2, &b->pit) < 0 ||
      ioctl(fd, KVM_GET_CLOCK, &b->clock) < 0) {
    free(b);
    return mv__fail(err, -errno, "guest:snapshot: KVM_GET_IRQCHIP/PIT2/CLOCK: %s", strerror(errno));
  }
  *out = b;
  *len = sizeof *b;
  return 0;
}

int kvm_guest_load(mv_guest *g, const void *blob, size_t len, mv_err *err) {
  if (!KG(g)->irqchip && len == 0) return 0;
  if (len != sizeof(kvm_guest_blob) || !KG(g)->irqchip)
    return mv__fail(err, -EINVAL, "guest:restore: the snapshot's irqchip state does not fit this guest");
  kvm_guest_blob b;
  memcpy(&b, blob, sizeof b);
  int fd = KG(g)->vm_fd;
  b.clock.flags = 0;
  if (ioctl(fd, KVM_SET_IRQCHIP, &b.chips[0]) < 0 || ioctl(fd, KVM_SET_IRQCHIP, &b.chips[1]) < 0 ||
      ioctl(fd, KVM_SET_IRQCHIP, &b.chips[2]) < 0 || ioctl(fd, KVM_SET_PIT2, &b.pit) < 0 ||
      ioctl(fd, KVM_SET_CLOCK, &b.clock) < 0)
    return mv__fail(err, -errno, "guest:restore: KVM_SET_IRQCHIP/PIT2/CLOCK: %s", strerror(errno));
  return 0;
}

