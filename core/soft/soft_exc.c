/*
 * soft_exc.c - CPU exceptions on the soft backend.  Unicorn does not deliver
 * them through the guest's IDT; each ends the run with an "exception" exit
 * carrying what the CPU would have pushed: the vector, the error code for
 * the vectors that have one (8, 10-14, 17, 21, 29, 30), the RIP of the
 * frame (the faulting instruction; for INT n the one after it), and CR2
 * for page faults.  At CPL > 0 an INT n goes through the IDT gate checks a
 * CPU makes (limit, type, DPL, present), so from ring 3 through a DPL 0
 * gate it is a #GP with error code n*8+2 at the INT instruction.
 *
 * Two sources: exceptions Unicorn raises (its interrupt hook; the error
 * code and the INT flag come from soft_env.c), and accesses to addresses
 * Unicorn has no memory behind (its unmapped-memory hook), where this file
 * makes the checks Unicorn's own page walk would have made: non-canonical
 * addresses (#GP(0)), pages not present or not allowed (#PF with the P, W,
 * U and I/D bits and CR2).
 */
#include <string.h>
#include "soft.h"

#define CR0_WP (UINT64_C(1) << 16)
#define CR4_PAE (UINT64_C(1) << 5)
#define CR4_SMEP (UINT64_C(1) << 20)
#define EFER_NXE (UINT64_C(1) << 11)
#define PF_P 1u
#define PF_W 2u
#define PF_U 4u
#define PF_ID 0x10u

static bool has_error_code(unsigned vector) {
  return vector == 8 || (vector >= 10 && vector <= 14) || vector == 17 || vector == 21 || vector == 29 || vector == 30;
}

static unsigned cpl_of(soft_vcpu *sv) {
  return sv->mode == UC_MODE_16 ? 0 : (unsigned)reg(sv->uc, UC_X86_REG_CS) & 3;
}

static uint64_t rip_of(soft_vcpu *sv) {
  return sv->mode == UC_MODE_64 ? reg(sv->uc, UC_X86_REG_RIP) : reg(sv->uc, UC_X86_REG_EIP) & 0xffffffff;
}

/* The RIP of the instruction at a linear address (CS base 0 in long mode). */
static uint64_t rip_at(mv_vcpu *c, uint64_t linear) {
  mv_sregs s;
  if (SV(c)->mode == UC_MODE_64 || soft_get_sregs(c, &s, NULL) < 0) return linear;
  return (linear - s.cs.base) & (SV(c)->mode == UC_MODE_16 ? 0xffff : 0xffffffff);
}

static void set_rip(soft_vcpu *sv, uint64_t rip) {
  set_reg(sv->uc, sv->mode == UC_MODE_64 ? UC_X86_REG_RIP : UC_X86_REG_EIP, sv->mode == UC_MODE_16 ? rip & 0xffff : rip);
}

static void report(mv_vcpu *c, unsigned vector, bool with_code, uint32_t code, uint64_t rip) {
  *c->exit = (mv_exit){ .type = MV_EXIT_EXCEPTION, .rip = rip, .detail = { vector, with_code ? code : 0, with_code } };
  SV(c)->stop_requested = 1;
  SV(c)->exit_set = true;
}

static bool read_linear(mv_vcpu *c, uint64_t linear, void *buf, size_t n) {
  uint64_t pa;
  return soft_translate(c, linear, &pa) && mv_guest_read(c->guest, pa, buf, n, NULL) == 0;
}

/* In the interrupt hook, while Unicorn's CPU state still describes this
 * exception (later walks, even Unicorn's own, overwrite it). */
void soft_exc_raised(mv_vcpu *c, uint32_t intno) {
  soft_vcpu *sv = SV(c);
  report(c, intno, false, 0, rip_of(sv));
  sv->exc_known = soft_env_take_exception(c, &sv->exc);
  sv->exc_pending = SOFT_EXC_RAISED;
}

/* The exception an INT n at CPL > 0 becomes in the IDT gate checks, or -1
 * when the gate lets it through; *code is the error code (n*8+2). */
static int gate_fault(mv_vcpu *c, unsigned n, unsigned cpl, uint32_t *code) {
  soft_vcpu *sv = SV(c);
  uc_x86_mmr idtr = { 0 };
  uc_reg_read(sv->uc, UC_X86_REG_IDTR, &idtr);
  uint64_t size = sv->mode == UC_MODE_64 ? 16 : 8, gate = 0;
  *code = n * 8 + 2;
  if ((uint64_t)n * size + size - 1 > idtr.limit) return 13;
  if (!read_linear(c, idtr.base + n * size, &gate, 8)) return 13;
  unsigned type = (gate >> 40) & 0xf, dpl = (gate >> 45) & 3;
  bool gate_type = sv->mode == UC_MODE_64 ? type == 14 || type == 15 : type == 5 || type == 6 || type == 7 || type == 14 || type == 15;
  if (!gate_type || dpl < cpl) return 13;
  if (!((gate >> 47) & 1)) return 11;
  return -1;
}

void soft_exc_after_run(mv_vcpu *c) {
  soft_vcpu *sv = SV(c);
  mv_exit *x = c->exit;
  unsigned vector = (unsigned)x->detail[0];
  soft_env_exception e = sv->exc_known ? sv->exc : (soft_env_exception){ 0, false };
  if (sv->exc_pending == SOFT_EXC_IO) {   /* undo what the refused IN/OUT did after the hook */
    static const int ids[4] = { UC_X86_REG_RAX, UC_X86_REG_RCX, UC_X86_REG_RSI, UC_X86_REG_RDI };
    static const int ids32[4] = { UC_X86_REG_EAX, UC_X86_REG_ECX, UC_X86_REG_ESI, UC_X86_REG_EDI };
    for (int i = 0; i < 4; i++) set_reg(sv->uc, sv->mode == UC_MODE_64 ? ids[i] : ids32[i], sv->io_regs[i]);
    set_rip(sv, x->rip);
    sv->exc_pending = SOFT_EXC_NONE;
    return;
  }
  sv->exc_pending = SOFT_EXC_NONE;
  if (e.is_int) {   /* INT n, INT3, INTO: Unicorn put RIP after the instruction */
    unsigned cpl = cpl_of(sv);
    uint32_t code;
    int v = sv->mode != UC_MODE_16 && cpl > 0 ? gate_fault(c, vector, cpl, &code) : -1;
    if (v >= 0) {   /* a fault of the INT instruction itself */
      report(c, (unsigned)v, true, code, rip_at(c, sv->pc));
      set_rip(sv, x->rip);
    }
    return;
  }
  report(c, vector, sv->exc_known && has_error_code(vector), e.error_code, x->rip);
  set_rip(sv, x->rip);
}

bool soft_exc_access(mv_vcpu *c, uc_mem_type type, uint64_t addr, uint64_t *phys) {
  soft_vcpu *sv = SV(c);
  if (sv->mode == UC_MODE_64 && (uint64_t)(((int64_t)addr >> 47) + 1) > 1) {   /* not canonical */
    report(c, 13, true, 0, rip_of(sv));
    return true;
  }
  uint64_t cr0 = reg(sv->uc, UC_X86_REG_CR0), cr4 = reg(sv->uc, UC_X86_REG_CR4), efer = 0;
  soft_get_msr(c, 0xc0000080, &efer, NULL);
  soft_walk w;   /* with paging off: present, everything allowed */
  bool present = soft_walk_page(c, addr, &w);
  bool write = type == UC_MEM_WRITE_UNMAPPED, fetch = type == UC_MEM_FETCH_UNMAPPED, user = cpl_of(sv) == 3;
  bool ok = present && !(user && !w.user) && !(write && !w.write && (user || (cr0 & CR0_WP))) &&
            !(fetch && w.nx && (efer & EFER_NXE)) && !(fetch && !user && w.user && (cr4 & CR4_SMEP));
  if (ok) {
    *phys = w.phys;
    return false;
  }
  uint32_t code = (present ? PF_P : 0) | (write ? PF_W : 0) | (user ? PF_U : 0) |
                  (fetch && (((efer & EFER_NXE) && (cr4 & CR4_PAE)) || (cr4 & CR4_SMEP)) ? PF_ID : 0);
  set_reg(sv->uc, UC_X86_REG_CR2, addr);
  report(c, 14, true, code, rip_of(sv));
  return true;
}

/* Whether the TSS I/O permission bitmap lets CPL > IOPL code reach the size
 * ports from port (every bit clear, inside the TSS limit). */
static bool tss_allows(mv_vcpu *c, uint32_t port, unsigned size) {
  uc_x86_mmr tr = { 0 };
  uc_reg_read(SV(c)->uc, UC_X86_REG_TR, &tr);
  uint16_t base = 0, bits = 0;
  if (tr.limit < 0x67 || !read_linear(c, tr.base + 0x66, &base, 2)) return false;
  uint64_t at = (uint64_t)base + port / 8;
  if (at + 1 > tr.limit || !read_linear(c, tr.base + at, &bits, 2)) return false;
  return !((bits >> (port & 7)) & ((1u << size) - 1));
}

bool soft_exc_io(mv_vcpu *c, uint32_t port, unsigned size) {
  soft_vcpu *sv = SV(c);
  unsigned cpl = cpl_of(sv);   /* 0 in real mode */
  if (cpl == 0 || cpl <= ((reg(sv->uc, UC_X86_REG_EFLAGS) >> 12) & 3) || tss_allows(c, port, size)) return false;
  static const int ids[4] = { UC_X86_REG_RAX, UC_X86_REG_RCX, UC_X86_REG_RSI, UC_X86_REG_RDI };
  static const int ids32[4] = { UC_X86_REG_EAX, UC_X86_REG_ECX, UC_X86_REG_ESI, UC_X86_REG_EDI };
  for (int i = 0; i < 4; i++) sv->io_regs[i] = reg(sv->uc, sv->mode == UC_MODE_64 ? ids[i] : ids32[i]);
  report(c, 13, true, 0, rip_of(sv));
  sv->exc_pending = SOFT_EXC_IO;
  return true;
}

/* Unicorn's #UD, except where QEMU raises it for a fault a CPU reports as
 * #GP(0): SYSRET and RDPMC (CR4.PCE clear) at CPL > 0. */
void soft_exc_invalid(mv_vcpu *c, uint64_t rip) {
  soft_vcpu *sv = SV(c);
  uint8_t code[16] = { 0 };
  unsigned i = 0, vector = 6;
  if (sv->mode != UC_MODE_16 && cpl_of(sv) > 0 && sv->pc != UINT64_MAX && read_linear(c, sv->pc, code, sizeof code)) {
    static const uint8_t prefixes[] = { 0x66, 0x67, 0xf0, 0xf2, 0xf3, 0x2e, 0x36, 0x3e, 0x26, 0x64, 0x65 };
    while (i < 14 && (memchr(prefixes, code[i], sizeof prefixes) || (sv->mode == UC_MODE_64 && (code[i] & 0xf0) == 0x40))) i++;
    bool pce = reg(sv->uc, UC_X86_REG_CR4) & 0x100;
    if (code[i] == 0x0f && (code[i + 1] == 0x07 || (code[i + 1] == 0x33 && !pce))) vector = 13;
  }
  report(c, vector, vector == 13, 0, rip);
  c->exit->reason = UC_ERR_INSN_INVALID;
}
