/*
 * soft_cpuid.c - what CPUID tells a guest of the soft backend, and
 * cpu:cpuid_set's overrides of it.
 *
 * Unicorn's own CPUID described another CPU (AMD family 6 model 6) and
 * did not match what its translator executes: no POPCNT, MOVBE or SSE3
 * (which it refuses as #UD) next to SSSE3 and SSE4.1, no FPU or TSC bit
 * for an x87 and an RDTSC that work.  The soft backend answers every leaf
 * itself: a CPU of its own, "MoonvisorCPU" (brand string "moonvisor soft
 * CPU (Unicorn 2.0.1)"), offering exactly the features below, each of
 * which spec/cpuid_spec.lua executes (checking results where an
 * instruction could run and be wrong).  Leaves it does not describe read 0.
 *
 * Overrides are matched as KVM matches its CPUID entries: a leaf that
 * takes a subleaf (4, 7, 0xb, 0xd, ...), or an override set with a
 * subleaf other than 0, answers that subleaf only; any other answers
 * whatever ECX holds.  As on KVM they are refused once the VCPU has run.
 */
#include <errno.h>
#include <string.h>
#include "soft.h"

#define MAX_BASIC 7u
#define MAX_EXTENDED 0x80000008u

/* CPUID.1:EDX  FPU, TSC, MSR, PAE, CX8, CMOV, CLFSH, MMX, FXSR, SSE, SSE2 */
#define FEATURES_1_EDX (1u << 0 | 1u << 4 | 1u << 5 | 1u << 6 | 1u << 8 | 1u << 15 | 1u << 19 | \
                        1u << 23 | 1u << 24 | 1u << 25 | 1u << 26)
/* CPUID.1:ECX  SSSE3, CX16, SSE4.1, SSE4.2, AES */
#define FEATURES_1_ECX (1u << 9 | 1u << 13 | 1u << 19 | 1u << 20 | 1u << 25)
/* CPUID.(7,0):EBX  BMI1, ADX (not BMI2: Unicorn's PDEP and PEXT swap their operands) */
#define FEATURES_7_EBX (1u << 3 | 1u << 19)
/* CPUID.80000001h:ECX  LAHF/SAHF in long mode, LZCNT (ABM) */
#define FEATURES_X1_ECX (1u << 0 | 1u << 5)
/* CPUID.80000001h:EDX  SYSCALL, RDTSCP, long mode (no NX: Unicorn drops EFER.NXE) */
#define FEATURES_X1_EDX (1u << 11 | 1u << 27 | 1u << 29)

static const char vendor[13] = "MoonvisorCPU";
static const char brand[48] = "moonvisor soft CPU (Unicorn 2.0.1)";

static void pack(uint32_t *out, const char *s, int n) {   /* n registers of 4 bytes */
  for (int i = 0; i < n; i++) memcpy(&out[i], s + 4 * i, 4);
}

/* The soft CPU's own answer: eax, ebx, ecx, edx. */
static void describe_leaf(mv_vcpu *c, uint32_t leaf, uint32_t subleaf, uint32_t r[4]) {
  memset(r, 0, 4 * sizeof r[0]);
  uint32_t v[3];
  switch (leaf) {
  case 0:
    pack(v, vendor, 3);   /* EBX, EDX, ECX */
    r[0] = MAX_BASIC, r[1] = v[0], r[3] = v[1], r[2] = v[2];
    break;
  case 1:   /* family 6, model 0; CLFLUSH line 64 bytes; initial APIC ID = VCPU id */
    r[0] = 0x600, r[1] = 8u << 8 | (uint32_t)c->id << 24, r[2] = FEATURES_1_ECX, r[3] = FEATURES_1_EDX;
    if (c->guest->nvcpus > 1)   /* several VCPUs: their count, and HTT to say it is valid (as kvm.c) */
      r[1] |= (uint32_t)(c->guest->nvcpus & 0xff) << 16, r[3] |= 1u << 28;
    break;
  case 7:
    if (subleaf == 0) r[1] = FEATURES_7_EBX;
    break;
  case 0x80000000:
    r[0] = MAX_EXTENDED;
    break;
  case 0x80000001:
    r[2] = FEATURES_X1_ECX, r[3] = FEATURES_X1_EDX;
    break;
  case 0x80000002: case 0x80000003: case 0x80000004:
    pack(r, brand + 16 * (leaf - 0x80000002), 4);
    break;
  case 0x80000008:   /* 40 physical, 48 linear address bits */
    r[0] = 0x3028;
    break;
  default:
    break;
  }
}

/* The leaves whose answer depends on ECX (KVM's "significant index"). */
static bool takes_subleaf(uint32_t leaf) {
  static const uint32_t indexed[] = { 4, 7, 0xb, 0xd, 0xf, 0x10, 0x12, 0x14, 0x17, 0x18, 0x1d, 0x1e, 0x1f,
                                      0x20, 0x23, 0x24, 0x8000001d, 0x80000020, 0x80000026 };
  for (size_t i = 0; i < sizeof indexed / sizeof indexed[0]; i++)
    if (indexed[i] == leaf) return true;
  return false;
}

static bool described(uint32_t leaf) {
  return leaf <= MAX_BASIC || (leaf >= 0x80000000 && leaf <= MAX_EXTENDED);
}

int soft_set_cpuid(mv_vcpu *c, uint32_t leaf, uint32_t subleaf, const uint32_t regs[4], mv_err *err) {
  soft_vcpu *sv = SV(c);
  if (sv->ran) return mv__fail(err, -EBUSY, "vcpu:cpuid_set: the CPUID is fixed at the first enter: set it before");
  int i = 0;
  while (i < sv->ncpuid && !(sv->cpuid[i].leaf == leaf && (!sv->cpuid[i].indexed || sv->cpuid[i].subleaf == subleaf))) i++;
  if (i == sv->ncpuid) {
    if (sv->ncpuid == (int)(sizeof sv->cpuid / sizeof sv->cpuid[0]))
      return mv__fail(err, -ENOSPC, "vcpu:cpuid_set: too many CPUID leaves");
    sv->ncpuid++;
    sv->cpuid[i].leaf = leaf;
    sv->cpuid[i].subleaf = subleaf;
    sv->cpuid[i].indexed = described(leaf) ? takes_subleaf(leaf) : subleaf != 0 || takes_subleaf(leaf);
  }
  memcpy(sv->cpuid[i].regs, regs, sizeof sv->cpuid[i].regs);
  return 0;
}

int soft_cpuid_hook(uc_engine *uc, void *user) {
  mv_vcpu *c = user;
  soft_vcpu *sv = SV(c);
  uint32_t leaf = (uint32_t)reg(uc, UC_X86_REG_EAX), subleaf = (uint32_t)reg(uc, UC_X86_REG_ECX), r[4];
  int i = 0;
  while (i < sv->ncpuid && !(sv->cpuid[i].leaf == leaf && (!sv->cpuid[i].indexed || sv->cpuid[i].subleaf == subleaf))) i++;
  if (i < sv->ncpuid) memcpy(r, sv->cpuid[i].regs, sizeof r);
  else describe_leaf(c, leaf, subleaf, r);
  bool wide = sv->mode == UC_MODE_64;   /* a 32-bit result clears the upper half */
  const int ids[4] = { wide ? UC_X86_REG_RAX : UC_X86_REG_EAX, wide ? UC_X86_REG_RBX : UC_X86_REG_EBX,
                       wide ? UC_X86_REG_RCX : UC_X86_REG_ECX, wide ? UC_X86_REG_RDX : UC_X86_REG_EDX };
  for (int k = 0; k < 4; k++) set_reg(uc, ids[k], r[k]);
  return 1;   /* handled: Unicorn skips its own CPUID */
}
