/*
 * kvm_dirty.c - which pages the guest wrote, on KVM.  Where the kernel has
 * a dirty ring (KVM_CAP_DIRTY_LOG_RING) each VCPU has one, mapped into this
 * process: KVM appends a page the first time the guest writes it after the
 * page was write-protected, and reading the entries costs no ioctl.
 * Re-protecting the pages read (KVM_RESET_DIRTY_RINGS) is one ioctl; it is
 * done lazily.  Until then those pages are "sticky": the guest may write
 * them again without an entry, so they are reported as maybe written, and a
 * restore compares them with the snapshot (dirty.c, snapshot.c).  A caller
 * that needs every write logged (g:dirty_pages) re-protects at once, and so
 * does a full ring or more than STICKY_MAX sticky pages.
 *
 * Without the ring (or with MOONVISOR_DIRTY_RING=0, mv.guest{ dirty_ring =
 * false }) it is KVM_GET_DIRTY_LOG, one ioctl per mapping and call.
 */
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#include "kvm.h"

#define RING_ENTRIES 4096   /* per VCPU: 64 KiB of struct kvm_dirty_gfn */
#define STICKY_MAX 64       /* sticky pages before a restore re-protects them */

static size_t words(uint64_t npages) { return (size_t)((npages + 63) / 64); }

/* {====================================================== setup */

int kvm_dirty_setup(mv_guest *g, const mv_guest_opts *opts, mv_err *err) {
  kvm_guest *kg = KG(g);
  const char *env = getenv("MOONVISOR_DIRTY_RING");
  if (opts->no_dirty_ring || (env && strcmp(env, "0") == 0)) return 0;
  int cap = KVM_CAP_DIRTY_LOG_RING, max = kvm_cap(cap);
  if (max <= 0) max = kvm_cap(cap = KVM_CAP_DIRTY_LOG_RING_ACQ_REL);
  if (max <= 0) return 0;
  uint32_t bytes = RING_ENTRIES * (uint32_t)sizeof(struct kvm_dirty_gfn);
  while (bytes > (uint32_t)max) bytes /= 2;
  if (bytes < (uint32_t)getpagesize()) return 0;
  struct kvm_enable_cap en = { .cap = (uint32_t)cap, .args = { bytes } };
  if (ioctl(kg->vm_fd, KVM_ENABLE_CAP, &en) < 0)
    return mv__fail(err, -errno, "guest: KVM_ENABLE_CAP dirty ring: %s", strerror(errno));
  kg->ring_entries = bytes / sizeof(struct kvm_dirty_gfn);
  return 0;
}

int kvm_dirty_vcpu_init(mv_vcpu *c, mv_err *err) {
  kvm_guest *kg = KG(c->guest);
  kvm_vcpu *kv = KV(c);
  if (!kg->ring_entries) return 0;
  void *p = mmap(NULL, kg->ring_entries * sizeof(struct kvm_dirty_gfn), PROT_READ | PROT_WRITE, MAP_SHARED,
                 kv->fd, (off_t)KVM_DIRTY_LOG_PAGE_OFFSET * getpagesize());
  if (p == MAP_FAILED) return mv__fail(err, -errno, "guest:vcpu: mmap of the dirty ring: %s", strerror(errno));
  kv->ring = p;
  return 0;
}

static void harvest(mv_guest *g);

void kvm_dirty_vcpu_fini(mv_vcpu *c) {
  kvm_vcpu *kv = KV(c);
  if (!kv->ring) return;
  harvest(c->guest);   /* its entries would be lost with the mapping */
  munmap(kv->ring, KG(c->guest)->ring_entries * sizeof(struct kvm_dirty_gfn));
  kv->ring = NULL;
}

int kvm_dirty_map(mv_guest *g, const mv_mapping *m, mv_err *err) {
  kvm_guest *kg = KG(g);
  if (!kg->ring_entries) return 0;
  kvm_dirty_slot *d = &kg->slots[m->slot];
  uint64_t npages = m->size / MV_PAGE_SIZE;
  *d = (kvm_dirty_slot){ .npages = npages, .logged = calloc(words(npages), 8),
                         .sticky = calloc(words(npages), 8), .maybe = calloc(words(npages), 8) };
  if (d->logged && d->sticky && d->maybe) return 0;
  kvm_dirty_unmap(g, m);
  return mv__fail(err, -ENOMEM, "guest:map: out of memory");
}

void kvm_dirty_unmap(mv_guest *g, const mv_mapping *m) {
  kvm_guest *kg = KG(g);
  if (!kg->ring_entries) return;
  harvest(g);   /* the slot number may come back with another mapping */
  kvm_dirty_slot *d = &kg->slots[m->slot];
  free(d->logged);
  free(d->sticky);
  free(d->maybe);
  *d = (kvm_dirty_slot){ 0 };
}

/* {====================================================== the ring */

/* Reads every VCPU's new entries into the slots' logged and sticky bits and
 * marks the entries harvested (KVM re-protects their pages at the next reset). */
static void harvest(mv_guest *g) {
  kvm_guest *kg = KG(g);
  uint32_t mask = kg->ring_entries - 1;
  for (int i = 0; i < g->nvcpus; i++) {
    mv_vcpu *c = g->vcpus[i];
    kvm_vcpu *kv = c && !c->destroyed ? KV(c) : NULL;
    if (!kv || !kv->ring) continue;
    for (;;) {
      struct kvm_dirty_gfn *e = &kv->ring[kv->ring_next & mask];
      if (!(__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) & KVM_DIRTY_GFN_F_DIRTY)) break;
      uint32_t slot = e->slot & 0xffff;   /* address space 0: the only one used */
      if ((e->slot >> 16) == 0 && slot < MV_MAX_MAPPINGS && e->offset < kg->slots[slot].npages) {
        kvm_dirty_slot *d = &kg->slots[slot];
        uint64_t bit = UINT64_C(1) << (e->offset % 64);
        d->logged[e->offset / 64] |= bit;
        if (!(d->sticky[e->offset / 64] & bit)) kg->nsticky++;
        d->sticky[e->offset / 64] |= bit;
      }
      __atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
      kv->ring_next++;
    }
  }
}

/* Re-protects every page harvested so far: their next writes are logged. */
static int reset(mv_guest *g, mv_err *err) {
  kvm_guest *kg = KG(g);
  harvest(g);
  if (ioctl(kg->vm_fd, KVM_RESET_DIRTY_RINGS, 0) < 0)
    return mv__fail(err, -errno, "guest: KVM_RESET_DIRTY_RINGS: %s", strerror(errno));
  for (int s = 0; s < MV_MAX_MAPPINGS; s++) {
    kvm_dirty_slot *d = &kg->slots[s];
    for (size_t w = 0; d->sticky && w < words(d->npages); w++) {
      d->maybe[w] |= d->sticky[w];   /* written unlogged until now, maybe */
      d->sticky[w] = 0;
    }
  }
  kg->nsticky = 0;
  return 0;
}

int kvm_dirty_ring_full(mv_guest *g, mv_err *err) { return reset(g, err); }

int kvm_dirty_rearm(mv_guest *g, mv_err *err) { return KG(g)->ring_entries && KG(g)->nsticky ? reset(g, err) : 0; }

/* {====================================================== the backend ops */

int kvm_dirty_log(mv_guest *g, const mv_mapping *m, uint64_t *bitmap, mv_err *err) {
  kvm_guest *kg = KG(g);
  if (!kg->ring_entries) {
    struct kvm_dirty_log log = { .slot = m->slot, .dirty_bitmap = bitmap };
    IOCTL_OR_FAIL(kg->vm_fd, KVM_GET_DIRTY_LOG, &log, "guest:dirty_pages");
    return 0;
  }
  harvest(g);
  kvm_dirty_slot *d = &kg->slots[m->slot];
  for (size_t w = 0; w < words(d->npages); w++) {
    bitmap[w] |= d->logged[w];
    d->logged[w] = 0;
  }
  return 0;
}

int kvm_dirty_unlogged(mv_guest *g, const mv_mapping *m, uint64_t *maybe, bool exact, mv_err *err) {
  kvm_guest *kg = KG(g);
  if (!kg->ring_entries) return 0;
  if (kg->nsticky && (exact || kg->nsticky > STICKY_MAX)) {
    int r = reset(g, err);
    if (r < 0) return r;
  }
  kvm_dirty_slot *d = &kg->slots[m->slot];
  for (size_t w = 0; w < words(d->npages); w++) {
    maybe[w] |= d->maybe[w] | d->sticky[w];
    d->maybe[w] = 0;
  }
  return 0;
}

void kvm_dirty_guest_fini(mv_guest *g) {
  kvm_guest *kg = KG(g);
  for (int s = 0; s < MV_MAX_MAPPINGS; s++) {
    free(kg->slots[s].logged);
    free(kg->slots[s].sticky);
    free(kg->slots[s].maybe);
    kg->slots[s] = (kvm_dirty_slot){ 0 };
  }
}
