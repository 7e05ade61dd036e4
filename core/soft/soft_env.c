/*
 * soft_env.c - CPU state that Unicorn 2.0.1 keeps but its API does not
 * reach, read and written through a saved CPU context (uc_context_save
 * copies QEMU's CPUX86State, uc_context_restore copies it back):
 *
 *  - the CPL.  In a 64-bit engine Unicorn's segment register writes set the
 *    selector alone, so the CPU kept running at CPL0 whatever CS said and
 *    enforced no privilege at CPL3 (hlt, cli, mov cr, in/out, iretq to
 *    ring 0 all went through);
 *  - the error code of the exception an interrupt hook reports, and
 *    whether it came from an INT instruction;
 *  - QEMU's "exception in flight", cleared only once an exception has been
 *    delivered through the IDT, which Unicorn never does: left set, the
 *    second fault of a VCPU became a double fault and the third a silent
 *    stop.
 *
 * The offsets are not guessed.  They are found once per process by writing
 * marker values into a copy of a context with Unicorn's own
 * uc_context_reg_write (EAX, ECX, EDI, EIP, DR0, DR1, DR3) and finding where
 * they land.  The fields wanted sit at fixed distances from those in QEMU's
 * CPUX86State (hflags and the segment caches after the general registers
 * and EIP; error code, INT flag and next EIP just before the debug
 * registers, the exception in flight after them and their four breakpoint
 * pointers), and each is checked against what the engine says (selectors,
 * mode bits, no hardware breakpoints, values in range) before any use.  If
 * a check fails, every function here returns false and the backend reports
 * what it can without them.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include "soft.h"

#define HF_CPL_MASK 3u
#define HF_PE (1u << 7)
#define HF_LMA (1u << 14)
#define HF_CS64 (1u << 15)

/* Distances in QEMU's CPUX86State (x86-64 target, 16 general registers). */
#define EIP_FROM_REGS 128       /* regs[16] */
#define HFLAGS_FROM_REGS 176    /* eip, eflags, cc_dst, cc_src, cc_src2, cc_op, df */
#define SEGS_FROM_REGS 184      /* hflags, hflags2 */
#define SEG_SIZE 24             /* selector, (pad), base, limit, flags */
#define SEG_FLAGS 20
#define ERROR_CODE_FROM_DR (-16) /* error_code, exception_is_int, exception_next_eip, dr[8] */
#define IS_INT_FROM_DR (-12)
#define BREAKPOINTS_FROM_DR 64  /* dr[8], then four pointers */
#define OLD_EXCEPTION_FROM_DR 96

static struct {
  size_t size;             /* bytes of a context */
  size_t hflags, segs, error_code, is_int, old_exception;
} layout;
static atomic_int layout_state;   /* 0: not looked for yet, 1: found (layout is set), -1: unusable */
static pthread_mutex_t layout_lock = PTHREAD_MUTEX_INITIALIZER;

static uint32_t u32_at(const unsigned char *b, size_t off) {
  uint32_t v;
  memcpy(&v, b + off, 4);
  return v;
}

/* Offset of the only occurrence of the 4 bytes of v, or -1. */
static long find_once(const unsigned char *b, size_t n, uint32_t v) {
  long at = -1;
  for (size_t i = 0; i + 4 <= n; i++) {
    if (u32_at(b, i) != v) continue;
    if (at >= 0) return -1;
    at = (long)i;
  }
  return at;
}

static bool look_for_layout(uc_engine *uc, uc_mode mode) {
  static const int ids[7] = { UC_X86_REG_EAX, UC_X86_REG_ECX, UC_X86_REG_EDI, UC_X86_REG_EIP,
                              UC_X86_REG_DR0, UC_X86_REG_DR1, UC_X86_REG_DR3 };
  static const uint64_t marks[7] = {   /* 64 bits: some writes read 8 bytes */ 0x9e3779b1, 0x85ebca6b, 0xc2b2ae35, 0x27d4eb2f,
                                     0x165667b1, 0xd3a2646c, 0xfd7046c5 };
  uc_context *ctx;
  if (uc_context_alloc(uc, &ctx) != UC_ERR_OK) return false;
  size_t n = uc_context_size(uc);
  long at[7];
  bool ok = uc_context_save(uc, ctx) == UC_ERR_OK;
  for (int i = 0; ok && i < 7; i++) ok = uc_context_reg_write(ctx, ids[i], &marks[i]) == UC_ERR_OK;
  for (int i = 0; ok && i < 7; i++) ok = (at[i] = find_once((const unsigned char *)ctx, n, (uint32_t)marks[i])) >= 0;
  if (ok) {
    size_t regs = (size_t)at[0], dr = (size_t)at[4];
    const unsigned char *b = (const unsigned char *)ctx;
    ok = at[1] == at[0] + 8 && at[2] == at[0] + 56 && at[3] == at[0] + EIP_FROM_REGS &&
         at[5] == at[4] + 8 && at[6] == at[4] + 24 && dr > regs + SEGS_FROM_REGS + 6 * SEG_SIZE &&
         dr + OLD_EXCEPTION_FROM_DR + 4 <= n;
    if (ok) {   /* the fields around the markers are what QEMU's layout says */
      uint32_t hf = u32_at(b, regs + HFLAGS_FROM_REGS);
      int32_t old = (int32_t)u32_at(b, dr + OLD_EXCEPTION_FROM_DR);
      uint32_t is_int = u32_at(b, dr + IS_INT_FROM_DR);
      static const int seg_ids[6] = { UC_X86_REG_ES, UC_X86_REG_CS, UC_X86_REG_SS,
                                      UC_X86_REG_DS, UC_X86_REG_FS, UC_X86_REG_GS };
      for (int i = 0; ok && i < 6; i++)
        ok = u32_at(b, regs + SEGS_FROM_REGS + (size_t)i * SEG_SIZE) == (reg(uc, seg_ids[i]) & 0xffff);
      for (int i = 0; ok && i < 32; i++) ok = b[dr + BREAKPOINTS_FROM_DR + (size_t)i] == 0;
      bool pe = hf & HF_PE, long_mode = (hf & (HF_LMA | HF_CS64)) == (HF_LMA | HF_CS64);
      ok = ok && old >= -1 && old < 32 && is_int <= 1 &&
           pe == (mode != UC_MODE_16) && long_mode == (mode == UC_MODE_64);
      if (ok) {
        layout.size = n;
        layout.hflags = regs + HFLAGS_FROM_REGS;
        layout.segs = regs + SEGS_FROM_REGS;
        layout.error_code = dr + (size_t)ERROR_CODE_FROM_DR;
        layout.is_int = dr + (size_t)IS_INT_FROM_DR;
        layout.old_exception = dr + OLD_EXCEPTION_FROM_DR;
      }
    }
  }
  uc_context_free(ctx);
  return ok;
}

/* The VCPU's context, saved; NULL when the layout is unknown. */
static unsigned char *env_save(mv_vcpu *c) {
  soft_vcpu *sv = SV(c);
  if (atomic_load(&layout_state) == 0) {
    pthread_mutex_lock(&layout_lock);
    if (atomic_load(&layout_state) == 0) atomic_store(&layout_state, look_for_layout(sv->uc, sv->mode) ? 1 : -1);
    pthread_mutex_unlock(&layout_lock);
  }
  if (atomic_load(&layout_state) < 0 || uc_context_size(sv->uc) != layout.size) return NULL;
  if (!sv->env && uc_context_alloc(sv->uc, &sv->env) != UC_ERR_OK) {
    sv->env = NULL;
    return NULL;
  }
  return uc_context_save(sv->uc, sv->env) == UC_ERR_OK ? (unsigned char *)sv->env : NULL;
}

static bool env_restore(mv_vcpu *c) { return uc_context_restore(SV(c)->uc, SV(c)->env) == UC_ERR_OK; }

bool soft_env_take_exception(mv_vcpu *c, soft_env_exception *x) {
  unsigned char *b = env_save(c);
  if (!b) return false;
  x->error_code = u32_at(b, layout.error_code);
  x->is_int = u32_at(b, layout.is_int) != 0;
  int32_t none = -1;
  memcpy(b + layout.old_exception, &none, 4);   /* as if it had been delivered */
  return env_restore(c);
}

bool soft_env_set_cpl(mv_vcpu *c, unsigned cpl, uint32_t cs_flags, uint32_t ss_flags) {
  unsigned char *b = env_save(c);
  if (!b) return false;
  uint32_t hf = (u32_at(b, layout.hflags) & ~HF_CPL_MASK) | (cpl & 3);
  memcpy(b + layout.hflags, &hf, 4);
  memcpy(b + layout.segs + 1 * SEG_SIZE + SEG_FLAGS, &cs_flags, 4);   /* QEMU's order: ES, CS, SS, ... */
  memcpy(b + layout.segs + 2 * SEG_SIZE + SEG_FLAGS, &ss_flags, 4);
  return env_restore(c);
}

void soft_env_close(mv_vcpu *c) {
  soft_vcpu *sv = SV(c);
  if (sv->env) uc_context_free(sv->env);
  sv->env = NULL;
}
