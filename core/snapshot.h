/*
 * snapshot.h - the layout of a snapshot, shared by snapshot.c (capture and
 * restore) and snapshot_file.c (save and load).
 */
#ifndef MV_SNAPSHOT_H
#define MV_SNAPSHOT_H

#include "internal.h"

typedef struct mv_snap_vcpu {
  int id;
  mv_regs regs;
  mv_sregs sregs;
  uint32_t pending_irq[8];
  void *blob;              /* the backend's own state (FPU, MSRs, ...) */
  size_t blob_len;
  bool portable;           /* the blob may be written to a file */
} mv_snap_vcpu;

typedef struct mv_snap_map {
  uint64_t gpa, size;
  unsigned flags;
  unsigned char *data;     /* a copy of the mapped memory */
} mv_snap_map;

struct mv_snapshot {
  uint64_t id;             /* unique in the process: which snapshot memory equals */
  const char *backend;     /* "kvm" or "soft" (static string) */
  int nvcpus, nmaps;
  mv_snap_vcpu *vcpus;
  mv_snap_map *maps;
  void *guest_blob;        /* irqchip, PIT, clock */
  size_t guest_blob_len;
};

mv_snapshot *mv__snapshot_new(int nvcpus, int nmaps);

#endif
