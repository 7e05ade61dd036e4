/*
 * vmo.c - memory objects (zx_vmo_create): page-rounded, zero-filled shared
 * anonymous memory with a reference count and a host-dirty bitmap.  Host
 * writes come through mv_vmo_write (or mv_guest_write) so that every page
 * the host touches is known to snapshots.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "internal.h"

#define MV_VMO_MAX (UINT64_C(1) << 40)   /* 1 TiB: beyond any sane guest */

int mv__fail(mv_err *err, int code, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->code = code;
  }
  return code;
}

int mv_vmo_create(uint64_t size, mv_vmo **out, mv_err *err) {
  if (size == 0 || size > MV_VMO_MAX)
    return mv__fail(err, -EINVAL, "vmo: size %" PRIu64 " out of range (1..2^40)", size);
  uint64_t pages = (size + MV_PAGE_SIZE - 1) / MV_PAGE_SIZE;
  mv_vmo *v = calloc(1, sizeof *v);
  uint64_t *dirty = calloc((pages + 63) / 64, sizeof *dirty);
  uint64_t *code = calloc((pages + 63) / 64, sizeof *code);
  if (!v || !dirty || !code) {
    free(v);
    free(dirty);
    free(code);
    return mv__fail(err, -ENOMEM, "vmo: out of memory");
  }
  void *mem = mmap(NULL, pages * MV_PAGE_SIZE, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) {
    int e = errno;
    free(v);
    free(dirty);
    free(code);
    return mv__fail(err, -e, "vmo: mmap of %" PRIu64 " bytes: %s", pages * MV_PAGE_SIZE, strerror(e));
  }
  v->mem = mem;
  v->size = pages * MV_PAGE_SIZE;
  v->refs = 1;
  v->host_dirty = dirty;
  v->code_dirty = code;
  *out = v;
  return 0;
}

void mv_vmo_retain(mv_vmo *vmo) { vmo->refs++; }

void mv_vmo_release(mv_vmo *vmo) {
  if (!vmo || --vmo->refs > 0) return;
  munmap(vmo->mem, vmo->size);
  free(vmo->host_dirty);
  free(vmo->code_dirty);
  free(vmo);
}

uint64_t mv_vmo_size(const mv_vmo *vmo) { return vmo->size; }

static int check_range(const mv_vmo *vmo, const char *what, uint64_t off, uint64_t len, mv_err *err) {
  if (off > vmo->size || len > vmo->size - off)
    return mv__fail(err, -ERANGE, "vmo:%s: range 0x%" PRIx64 "+0x%" PRIx64 " outside the %" PRIu64 "-byte vmo",
                    what, off, len, vmo->size);
  return 0;
}

void mv__vmo_mark_dirty(mv_vmo *vmo, uint64_t off, uint64_t len) {
  if (len == 0) return;
  vmo->host_writes++;
  if (off < vmo->guard_hi && vmo->guard_lo < off + len) vmo->guard_writes++;
  for (uint64_t p = off / MV_PAGE_SIZE; p <= (off + len - 1) / MV_PAGE_SIZE; p++) {
    vmo->host_dirty[p / 64] |= UINT64_C(1) << (p % 64);
    vmo->code_dirty[p / 64] |= UINT64_C(1) << (p % 64);
  }
}

int mv_vmo_read(mv_vmo *vmo, uint64_t off, void *dst, uint64_t len, mv_err *err) {
  int r = check_range(vmo, "read", off, len, err);
  if (r) return r;
  memcpy(dst, vmo->mem + off, len);
  return 0;
}

int mv_vmo_write(mv_vmo *vmo, uint64_t off, const void *src, uint64_t len, mv_err *err) {
  int r = check_range(vmo, "write", off, len, err);
  if (!r && vmo->rec) r = mv__rec_vmo_write(vmo, off, src, len, err);
  if (r) return r;
  memcpy(vmo->mem + off, src, len);
  mv__vmo_mark_dirty(vmo, off, len);
  return 0;
}
