/*
 * soft_once.c - once-breakpoints of the software backend
 * (mv_vcpu_set_once_breakpoints): a set of linear addresses the code hook
 * asks about before every instruction (soft_once_hit in soft.h).  Each slot
 * remembers the generation it last stopped in; rearming is a new generation.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "../internal.h"
#include "soft.h"

void soft_free_once(soft_vcpu *sv) {
  free(sv->once_addr);
  free(sv->once_seen);
  sv->once_addr = NULL;
  sv->once_seen = NULL;
  sv->once_mask = 0;
}

int soft_set_once(mv_vcpu *c, const uint64_t *addrs, size_t n, mv_err *err) {
  soft_vcpu *sv = SV(c);
  if (n > (1u << 24)) return mv__fail(err, -EINVAL, "vcpu:once_breakpoints: %zu addresses (at most 2^24)", n);
  soft_free_once(sv);
  if (n == 0) return 0;
  uint32_t slots = 16;
  while (slots < 2 * n) slots *= 2;   /* at most half full */
  uint64_t *addr = malloc(slots * sizeof *addr);
  uint32_t *seen = calloc(slots, sizeof *seen);
  if (!addr || !seen) {
    free(addr);
    free(seen);
    return mv__fail(err, -ENOMEM, "vcpu:once_breakpoints: out of memory for %zu addresses", n);
  }
  memset(addr, 0xff, slots * sizeof *addr);
  for (size_t k = 0; k < n; k++) {
    if (addrs[k] == UINT64_MAX) {
      free(addr);
      free(seen);
      return mv__fail(err, -EINVAL, "vcpu:once_breakpoints: address 0xffffffffffffffff cannot be one");
    }
    uint32_t i = soft_slot(addrs[k], slots - 1);
    while (addr[i] != UINT64_MAX && addr[i] != addrs[k]) i = (i + 1) & (slots - 1);
    addr[i] = addrs[k];
  }
  sv->once_addr = addr;
  sv->once_seen = seen;
  sv->once_mask = slots - 1;
  sv->once_gen = 1;   /* seen[] is 0: every one armed */
  return 0;
}

void soft_rearm_once(mv_vcpu *c) {
  soft_vcpu *sv = SV(c);
  if (!sv->once_mask) return;
  if (++sv->once_gen == 0) {   /* wrapped: forget every slot's generation */
    memset(sv->once_seen, 0, (sv->once_mask + 1) * sizeof *sv->once_seen);
    sv->once_gen = 1;
  }
}
