/*
 * soft.h - what the files of the software backend share: soft.c (the
 * Unicorn engine, hooks, memory and the run loop), soft_cpu.c (registers,
 * special registers, CPU modes and guest page-table walks), soft_exc.c
 * (exceptions as exits), soft_env.c (CPU state Unicorn's API does not
 * reach), soft_cpuid.c (what CPUID answers).
 */
#ifndef MV_SOFT_H
#define MV_SOFT_H

#include "ucapi.h"

typedef struct mmio_page_cb {
  mv_vcpu *cpu;
  uint64_t base;
  struct mmio_page_cb *next;
} mmio_page_cb;

typedef struct soft_vcpu {
  uc_engine *uc;
  uc_mode mode;                            /* UC_MODE_16 (real), _32 (protected), _64 (long) */
  volatile sig_atomic_t stop_requested;   /* set by callbacks, honoured before the next instruction */
  bool exit_set;                           /* *cpu->exit already describes why we stopped */
  uint64_t pc;                             /* linear address of the instruction last started */
  enum { SOFT_EXC_NONE, SOFT_EXC_RAISED, SOFT_EXC_IO } exc_pending;   /* soft_exc_after_run has work */
  bool exc_known;                          /* exc holds what Unicorn said about it */
  struct soft_env_exception { uint32_t error_code; bool is_int; } exc;   /* is_int: INT n, INT3, INTO */
  uint64_t io_regs[4];                     /* RAX, RCX, RSI, RDI before a refused IN/OUT */
  uc_context *env;                         /* soft_env.c's copy of the CPU state */
  mmio_page_cb *mmio;                      /* user data of MMIO pages mapped on first touch */
  uint64_t ro_addr;                        /* a write to read-only memory waiting to be discarded */
  uint8_t ro_saved[16];
  int ro_size;
  uint64_t seen_host_writes;               /* sum of the VMOs' host_writes at the last run */
  bool stepping;                           /* single-step: stop before the second instruction */
  struct { uint32_t leaf, subleaf, regs[4]; bool indexed; } cpuid[32];   /* cpuid_set overrides */
  int ncpuid;
  bool ran;                                /* entered once: the CPUID is fixed, as on KVM */
  uint64_t started;                        /* instructions begun in this uc_emu_start */
  uint64_t budget;                         /* guest:run's quantum: instructions left (set_budget) */
  bool budget_on;                          /* ... counted: a run ends when it reaches 0 */
  bool quantum_hit;                        /* the run ended there */
  /* once-breakpoints (soft_once.c): open addressing, UINT64_MAX = empty slot;
   * a slot is armed while its gen differs from once_gen */
  uint64_t *once_addr;
  uint32_t *once_seen;
  uint32_t once_mask;                      /* slots - 1; 0: no set */
  uint32_t once_gen;
} soft_vcpu;

static inline soft_vcpu *SV(mv_vcpu *c) { return c->be_state; }

/* Unicorn writes as many bytes as it likes (up to 8) into a register read's
 * buffer, whatever the register's width: always go through a uint64_t. */
static inline uint64_t reg(uc_engine *uc, int id) {
  uint64_t v = 0;
  uc_reg_read(uc, id, &v);
  return v;
}

static inline uc_err set_reg(uc_engine *uc, int id, uint64_t v) { return uc_reg_write(uc, id, &v); }

int soft_fail(mv_err *err, const char *what, uc_err e);

/* soft_once.c: once-breakpoints. */
int soft_set_once(mv_vcpu *c, const uint64_t *addrs, size_t n, mv_err *err);
void soft_rearm_once(mv_vcpu *c);
void soft_free_once(soft_vcpu *sv);

/* A key's home slot in an open-addressing table of mask + 1 slots
 * (Fibonacci hashing): the once-breakpoints' set, the page-table visit's. */
static inline uint32_t soft_slot(uint64_t key, uint32_t mask) {
  return (uint32_t)((key * UINT64_C(0x9e3779b97f4a7c15)) >> 40) & mask;
}

/* True (once per arming) when addr is an armed once-breakpoint: the code
 * hook's question before each instruction. */
static inline bool soft_once_hit(soft_vcpu *sv, uint64_t addr) {
  if (!sv->once_mask) return false;
  for (uint32_t i = soft_slot(addr, sv->once_mask);; i = (i + 1) & sv->once_mask) {
    uint64_t a = sv->once_addr[i];
    if (a == addr) {
      if (sv->once_seen[i] == sv->once_gen) return false;
      sv->once_seen[i] = sv->once_gen;
      return true;
    }
    if (a == UINT64_MAX) return false;
  }
}

/* soft.c: a fresh engine in the given mode, with hooks and memory. */
int soft_engine_open(mv_vcpu *c, uc_mode mode, mv_err *err);
void soft_engine_close(mv_vcpu *c);

/* soft_cpu.c */
int soft_get_regs(mv_vcpu *c, mv_regs *r, mv_err *err);
int soft_set_regs(mv_vcpu *c, const mv_regs *r, mv_err *err);
int soft_get_sregs(mv_vcpu *c, mv_sregs *s, mv_err *err);
int soft_set_sregs(mv_vcpu *c, const mv_sregs *s, mv_err *err);
int soft_get_msr(mv_vcpu *c, uint32_t index, uint64_t *value, mv_err *err);
int soft_get_fpu(mv_vcpu *c, mv_fpu *fpu, mv_err *err);
int soft_set_fpu(mv_vcpu *c, const mv_fpu *fpu, mv_err *err);
int soft_set_msr(mv_vcpu *c, uint32_t index, uint64_t value, mv_err *err);
/* Where uc_emu_start must begin: CS*16+IP in real mode, RIP otherwise. */
uint64_t soft_start_address(soft_vcpu *sv);
/* soft_paging.c.  Guest-physical address of a linear one through the
 * guest's page tables; false when the page is not present. */
bool soft_translate(mv_vcpu *c, uint64_t linear, uint64_t *phys);
/* The same walk, with what the levels allow (paging off: all of it). */
typedef struct soft_walk {
  uint64_t phys;
  bool user, write, nx;
} soft_walk;
bool soft_walk_page(mv_vcpu *c, uint64_t linear, soft_walk *w);
/* Calls mark(gpa) for every page of the guest's paging structures: the
 * page walker sets accessed/dirty bits there without any write hook. */
void soft_paging_pages(mv_vcpu *c, void (*mark)(mv_guest *g, uint64_t gpa));

/* soft_cpuid.c: cpu:cpuid_set, and the CPUID instruction hook (answers
 * every leaf). */
int soft_set_cpuid(mv_vcpu *c, uint32_t leaf, uint32_t subleaf, const uint32_t regs[4], mv_err *err);
int soft_cpuid_hook(uc_engine *uc, void *user);

/* soft_exc.c: exceptions as exits.  soft_exc_raised is the interrupt
 * hook's part, soft_exc_after_run completes the exit after uc_emu_start;
 * soft_exc_access checks an access to an address Unicorn has no memory
 * behind: true when it faults (the exit is set), else *phys is where it
 * goes; soft_exc_io, an IN/OUT: true when refused (#GP(0)); soft_exc_invalid
 * reports the instruction at rip that Unicorn found invalid. */
void soft_exc_raised(mv_vcpu *c, uint32_t intno);
void soft_exc_after_run(mv_vcpu *c);
bool soft_exc_access(mv_vcpu *c, uc_mem_type type, uint64_t addr, uint64_t *phys);
bool soft_exc_io(mv_vcpu *c, uint32_t port, unsigned size);
void soft_exc_invalid(mv_vcpu *c, uint64_t rip);

/* soft_env.c: Unicorn's CPU state beyond its API; false when out of reach. */
typedef struct soft_env_exception soft_env_exception;
/* What the exception being reported pushed; marks it delivered. */
bool soft_env_take_exception(mv_vcpu *c, soft_env_exception *x);
/* The CPL, and the flags of the CS and SS caches (descriptor bits 8-23). */
bool soft_env_set_cpl(mv_vcpu *c, unsigned cpl, uint32_t cs_flags, uint32_t ss_flags);
void soft_env_close(mv_vcpu *c);

#endif
