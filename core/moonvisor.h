/*
 * moonvisor.h - the public C interface of the moonvisor core.
 *
 * The core owns guests (VMs), memory objects (VMOs) and their guest-physical
 * mappings, VCPUs, the trap table (IO ports, MMIO ranges, doorbells) and the
 * exit loop that dispatches each exit to the matching trap's C callback.
 * Names follow Fuchsia's zx_guest_* / zx_vcpu_* / zx_vmo_* syscalls.
 *
 * It knows nothing about Lua.  Every call that can fail returns 0 or a
 * negative errno value and fills an mv_err with a message that names the
 * call and the value; nothing here aborts or exits the process.
 *
 * Two backends sit behind these functions: "kvm" (/dev/kvm ioctls) and
 * "soft" (the Unicorn CPU emulator, for hosts without /dev/kvm).
 */
#ifndef MOONVISOR_H
#define MOONVISOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MV_VERSION "0.1.0"
#define MV_PAGE_SIZE 4096u

typedef struct mv_err {
  int code;        /* negative errno, 0 when no error */
  char msg[256];   /* "guest:map: range 0x1000+0x2000 overlaps ..." */
} mv_err;

typedef struct mv_vmo mv_vmo;
typedef struct mv_guest mv_guest;
typedef struct mv_vcpu mv_vcpu;

/* {====================================================== KVM */

/* KVM_GET_API_VERSION (12 on every supported kernel), or -errno. */
int mv_kvm_api_version(mv_err *err);

typedef struct mv_cap_info {
  const char *name;  /* "irqchip", "immediate_exit", ... */
  int id;            /* KVM_CAP_* number */
} mv_cap_info;

/* The table of every capability moonvisor knows by name; *count gets its size. */
const mv_cap_info *mv_kvm_cap_table(size_t *count);
/* KVM_CHECK_EXTENSION on /dev/kvm: >= 0 result, or -errno. */
int mv_kvm_check_cap(int id, mv_err *err);

/* {====================================================== VMO */

/* Zero-filled shared anonymous memory, size rounded up to whole pages. */
int mv_vmo_create(uint64_t size, mv_vmo **out, mv_err *err);
void mv_vmo_retain(mv_vmo *vmo);
void mv_vmo_release(mv_vmo *vmo);   /* frees the memory on the last reference */
uint64_t mv_vmo_size(const mv_vmo *vmo);
/* Host accesses.  Writes go through here (or mv_guest_write) so snapshots
 * see them: every page touched is marked in the VMO's host-dirty bitmap. */
int mv_vmo_read(mv_vmo *vmo, uint64_t off, void *dst, uint64_t len, mv_err *err);
int mv_vmo_write(mv_vmo *vmo, uint64_t off, const void *src, uint64_t len, mv_err *err);

/* {====================================================== Guest */

typedef enum mv_backend_kind {
  MV_BACKEND_KVM = 0,
  MV_BACKEND_SOFT = 1,
} mv_backend_kind;

typedef struct mv_guest_opts {
  mv_backend_kind backend;
  bool irqchip;    /* in-kernel PIC/IOAPIC/LAPIC (kvm only) */
  bool no_sync_regs;   /* kvm: registers through ioctls even where KVM_CAP_SYNC_REGS keeps
                          them in kvm_run (also MOONVISOR_SYNC_REGS=0) */
  bool no_dirty_ring;  /* kvm: dirty pages through KVM_GET_DIRTY_LOG even where the kernel
                          has a dirty ring (also MOONVISOR_DIRTY_RING=0) */
} mv_guest_opts;

int mv_guest_create(const mv_guest_opts *opts, mv_guest **out, mv_err *err);
/* Releases every VCPU, mapping, trap and fd.  The handle stays valid (calls
 * fail with -EBADF) until mv_guest_release drops the last reference. */
void mv_guest_close(mv_guest *g);
bool mv_guest_is_closed(const mv_guest *g);
void mv_guest_retain(mv_guest *g);
void mv_guest_release(mv_guest *g);
const char *mv_guest_backend_name(const mv_guest *g);

/* How the backend does what has a fast and a slow way on this host. */
typedef struct mv_guest_mechanisms {
  bool sync_regs;          /* kvm: registers live in kvm_run (KVM_CAP_SYNC_REGS): no ioctl per access */
  const char *dirty_log;   /* how guest writes are logged: "ring" (KVM dirty ring), "bitmap"
                              (KVM_GET_DIRTY_LOG), "hooks" (the soft backend's write hooks) */
} mv_guest_mechanisms;
void mv_guest_get_mechanisms(const mv_guest *g, mv_guest_mechanisms *out);

enum {
  MV_MAP_READONLY = 1u << 0,   /* guest writes become mem exits */
  MV_MAP_LOG_DIRTY = 1u << 1,  /* guest writes are recorded per page */
};

/* zx_vmar_map: vmo[offset, offset+size) at guest-physical gpa.  gpa, offset
 * and size must be page aligned; overlaps with mappings or mem/bell traps
 * are refused before any ioctl. */
int mv_guest_map(mv_guest *g, uint64_t gpa, mv_vmo *vmo, uint64_t offset,
                 uint64_t size, unsigned flags, mv_err *err);
int mv_guest_unmap(mv_guest *g, uint64_t gpa, mv_err *err);

typedef struct mv_mapping_info {
  uint64_t gpa, size, offset;
  unsigned flags;
  mv_vmo *vmo;
} mv_mapping_info;
size_t mv_guest_mapping_count(const mv_guest *g);
bool mv_guest_mapping(const mv_guest *g, size_t i, mv_mapping_info *out);

/* Host access to guest-physical memory through the mappings.  The whole
 * range must be mapped (it may span adjacent mappings). */
int mv_guest_read(mv_guest *g, uint64_t gpa, void *dst, uint64_t len, mv_err *err);
int mv_guest_write(mv_guest *g, uint64_t gpa, const void *src, uint64_t len, mv_err *err);
/* 0 when all of [gpa, gpa+len) is mapped, else -EFAULT naming the first hole. */
int mv_guest_check_range(mv_guest *g, const char *what, uint64_t gpa, uint64_t len, mv_err *err);

/* Pages of the LOG_DIRTY mapping at gpa written since the last call, by the
 * guest or by the host.  Writes page numbers (relative to gpa) into pages[]
 * up to max; returns how many pages are dirty (may exceed max) or -errno. */
int64_t mv_guest_dirty_pages(mv_guest *g, uint64_t gpa, uint64_t *pages,
                             uint64_t max, mv_err *err);

/* {====================================================== Snapshots */

typedef struct mv_snapshot mv_snapshot;

/* Every VCPU's registers, special registers and backend state (FPU/XSAVE,
 * MSRs, LAPIC, pending events; irqchip and PIT when present) plus a copy of
 * all mapped memory.  From then on the guest logs writes to every mapping. */
int mv_guest_snapshot(mv_guest *g, mv_snapshot **out, mv_err *err);
/* Puts all of it back.  When memory last equalled this snapshot (it was the
 * last one taken or restored) only the pages written since are copied;
 * otherwise all of memory is.  The guest's mappings and VCPUs must be those
 * the snapshot was taken with. */
int mv_guest_restore(mv_guest *g, mv_snapshot *s, mv_err *err);
void mv_snapshot_free(mv_snapshot *s);
uint64_t mv_snapshot_memory_size(const mv_snapshot *s);
int mv_snapshot_vcpu_count(const mv_snapshot *s);
/* Pages copied by the last restore (for benchmarks and specs). */
uint64_t mv_guest_last_restore_pages(const mv_guest *g);
/* The file format: see snapshot_file.c. */
int mv_snapshot_save(const mv_snapshot *s, const char *path, mv_err *err);
int mv_snapshot_load(const char *path, mv_snapshot **out, mv_err *err);

/* {====================================================== Traps and exits */

typedef enum mv_trap_kind {
  MV_TRAP_IO = 0,    /* port range, synchronous */
  MV_TRAP_MEM = 1,   /* unmapped guest-physical range, synchronous */
  MV_TRAP_BELL = 2,  /* unmapped guest-physical range, writes delivered later */
} mv_trap_kind;

typedef enum mv_exit_type {
  MV_EXIT_IO = 0,
  MV_EXIT_MEM,
  MV_EXIT_BELL,
  MV_EXIT_HLT,
  MV_EXIT_SHUTDOWN,       /* triple fault */
  MV_EXIT_KICK,           /* mv_vcpu_kick */
  MV_EXIT_DEBUG,          /* single-step or breakpoint */
  MV_EXIT_FAIL_ENTRY,
  MV_EXIT_INTERNAL_ERROR,
  MV_EXIT_SYSTEM_EVENT,
  MV_EXIT_EXCEPTION,      /* a CPU exception the backend could not deliver */
  MV_EXIT_TIMEOUT,        /* mv_vcpu_enter_timeout ran out of time */
  MV_EXIT_SYSCALL,        /* soft backend: the guest executed syscall (rip is after it; rcx = rip, r11 = rflags) */
  MV_EXIT_UNKNOWN,
  MV_EXIT_TYPE_COUNT
} mv_exit_type;

const char *mv_exit_type_name(mv_exit_type t);

typedef struct mv_exit {
  mv_exit_type type;
  /* io / mem / bell */
  uint64_t addr;         /* port or guest-physical address */
  uint32_t size;         /* access size in bytes: 1, 2, 4 (io), 1..8 (mem) */
  bool write;
  uint64_t data;         /* value written, or the value read once answered */
  uint32_t trap_id;      /* the trap that claimed it, 0 when none did */
  /* everything else */
  uint64_t rip;          /* where known (debug, exception, shutdown) */
  uint64_t reason;       /* raw backend reason (KVM_EXIT_*, uc_err) */
  uint64_t detail[3];    /* hardware_entry_failure_reason, suberror, ...; exception:
                            vector, error code, 1 when the CPU pushes an error code */
  bool handler_failed;   /* a trap callback returned MV_TRAP_FAIL */
} mv_exit;

/* What a trap callback returns. */
enum {
  MV_TRAP_DONE = 0,      /* handled; for reads *value holds the answer */
  MV_TRAP_FAIL = 1,      /* stop: mv_vcpu_enter returns this exit with handler_failed */
};

/* Called for every access that falls in the trap.  For reads, *value starts
 * as all-ones (an empty bus) and the callback may overwrite it. */
typedef int (*mv_trap_fn)(void *cookie, mv_vcpu *cpu, mv_exit *exit, uint64_t *value);
/* Called once when the trap is removed or its guest closed. */
typedef void (*mv_trap_release_fn)(void *cookie);

/* zx_guest_set_trap: returns a trap id > 0 or -errno.  Overlapping traps of
 * the same address space are refused (-EEXIST). */
int mv_guest_set_trap(mv_guest *g, mv_trap_kind kind, uint64_t addr, uint64_t size,
                      mv_trap_fn fn, mv_trap_release_fn release, void *cookie,
                      mv_err *err);
int mv_guest_remove_trap(mv_guest *g, int trap_id, mv_err *err);
/* Gives trap trap_id's callback another cookie from its next call on; the
 * trap keeps its range, id and counters.  Only for a trap without a release
 * callback (its cookie owns nothing): -EINVAL otherwise, -ENOENT when there
 * is no such trap. */
int mv_guest_set_trap_cookie(mv_guest *g, int trap_id, void *cookie, mv_err *err);
size_t mv_guest_trap_count(const mv_guest *g);

/* {====================================================== Statistics and tracing */

typedef struct mv_vcpu_stats {
  uint64_t exits[MV_EXIT_TYPE_COUNT];    /* exits enter returned, by type */
  uint64_t handled[MV_EXIT_TYPE_COUNT];  /* accesses trap callbacks consumed, by type */
  uint64_t handler_ns;                   /* time in callbacks (with timing on) */
} mv_vcpu_stats;

typedef struct mv_trap_stats {
  int id;
  mv_trap_kind kind;
  uint64_t addr, size;
  uint64_t calls, ns;                    /* ns only with timing on */
} mv_trap_stats;

/* Trap i (0 <= i < mv_guest_trap_count) of the guest, ports first. */
bool mv_guest_trap_stats(const mv_guest *g, size_t i, mv_trap_stats *out);
void mv_vcpu_stats_get(const mv_vcpu *cpu, mv_vcpu_stats *out);
/* Time every trap callback (two clock reads per call). */
void mv_guest_set_timing(mv_guest *g, bool on);

/* Called for every exit: accesses a callback consumed and exits enter
 * returns.  start_ns is CLOCK_MONOTONIC; dur_ns the callback's time (or the
 * run's, for exits returned).  NULL turns tracing off. */
typedef void (*mv_trace_fn)(void *cookie, const mv_vcpu *cpu, const mv_exit *exit, uint64_t start_ns,
                            uint64_t dur_ns);
void mv_guest_set_trace(mv_guest *g, mv_trace_fn fn, void *cookie);

/* {====================================================== VCPU */

typedef struct mv_regs {
  uint64_t rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp;
  uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
  uint64_t rip, rflags;
} mv_regs;

typedef struct mv_segment {
  uint64_t base;
  uint32_t limit;
  uint16_t selector;
  uint8_t type, present, dpl, db, s, l, g, avl, unusable;
} mv_segment;

typedef struct mv_dtable {
  uint64_t base;
  uint16_t limit;
} mv_dtable;

typedef struct mv_sregs {
  mv_segment cs, ds, es, fs, gs, ss, tr, ldt;
  mv_dtable gdt, idt;
  uint64_t cr0, cr2, cr3, cr4, cr8, efer, apic_base;
} mv_sregs;

/* zx_vcpu_create: a VCPU in flat real mode starting at entry. */
int mv_vcpu_create(mv_guest *g, uint64_t entry, mv_vcpu **out, mv_err *err);
void mv_vcpu_destroy(mv_vcpu *cpu);   /* idempotent release of the VCPU */
mv_guest *mv_vcpu_guest(const mv_vcpu *cpu);
/* An opaque pointer for the embedder (the Lua bindings keep their state
 * here).  It heads every mv_vcpu, so mv_vcpu_user is a load inline: trap
 * callbacks read it at every exit. */
typedef struct mv_vcpu_head { void *user; } mv_vcpu_head;
void mv_vcpu_set_user(mv_vcpu *cpu, void *user);
static inline void *mv_vcpu_user(const mv_vcpu *cpu) { return ((const mv_vcpu_head *)(const void *)cpu)->user; }
/* The guest's VCPUs in creation order: VCPU i for 0 <= i < the count of
 * VCPUs it ever had, NULL for one destroyed since. */
int mv_guest_vcpu_count(const mv_guest *g);
mv_vcpu *mv_guest_vcpu(const mv_guest *g, int i);
int mv_vcpu_id(const mv_vcpu *cpu);

/* zx_vcpu_enter: runs the guest, calling trap callbacks on the way, until an
 * exit that no trap consumed.  Pending doorbells reach their callbacks before
 * it returns.  Returns 0 with *exit filled, or -errno (EBUSY when called from
 * inside a callback of the same VCPU, EBADF when the guest is closed). */
int mv_vcpu_enter(mv_vcpu *cpu, mv_exit *exit, mv_err *err);

/* mv_vcpu_enter with a time limit: when timeout_ns (> 0) passes first, the
 * VCPU is kicked and the exit's type is MV_EXIT_TIMEOUT. */
int mv_vcpu_enter_timeout(mv_vcpu *cpu, uint64_t timeout_ns, mv_exit *exit, mv_err *err);

/* Unwinding: an embedder whose trap callbacks raise errors by longjmp (Lua's
 * lua_call inside one protected frame around the whole enter, instead of a
 * protected call per exit) may jump out of a callback of an IO/MMIO access
 * when mv_vcpu_can_unwind says the backend allows it (kvm: its exit loop is
 * plain C; soft: no, Unicorn's frames would be skipped).  Doorbell callbacks
 * must not be left that way.  After such a jump, mv_vcpu_enter_unwound
 * finishes the enter as MV_TRAP_FAIL from that callback would have: a read
 * sees all ones, the instruction completes, the timeout is disarmed,
 * doorbells still queued reach their callbacks (which must be callable
 * again by then), and *exit (the record enter was given) has
 * handler_failed set.  Returns 1, 0 when no
 * enter was running (the jump came from elsewhere), or -EBADF when a
 * callback had closed the guest (the close happens now). */
bool mv_vcpu_can_unwind(const mv_vcpu *cpu);
int mv_vcpu_enter_unwound(mv_vcpu *cpu, mv_err *err);

enum {
  MV_DEBUG_SINGLESTEP = 1u << 0,     /* a debug exit (exception 1) after each instruction */
  MV_DEBUG_SW_BREAKPOINTS = 1u << 1, /* int3 gives a debug exit (exception 3), rip at the int3 */
};
/* Declares the VCPU a sandbox (moonvisor's mode "user" does): entered at
 * CPL 3 with its special registers as they are now (CR0, CR3, CR4, EFER,
 * GDTR, IDTR, TR), the guest can reach CPL 0 only through code in the
 * guest-physical ranges[i] = { gpa, size } (which hold every table that
 * leads there too: GDT, IDT, TSS, page tables), code that exits to the host
 * at once, writes no memory but its stack and changes no debug register,
 * XCR0 or MSR; and an exit at CPL 0 at one of the linear addresses clean[]
 * follows no exception (a system call's).  The caller vouches for that; the
 * backend checks the rest: each entry and exit, and that the ranges stay
 * unwritten and hold what they hold now (without the dirty log where the
 * page tables keep ring 3 off the ranges and the ring-0 stacks off them).
 * A restore then leaves out the debug registers and XCR0 after runs that
 * kept to it.  nranges = 0 withdraws the declaration; so do host MSR
 * and CPUID writes.  Backends without the optimisation accept and ignore it. */
int mv_vcpu_declare_sandbox(mv_vcpu *cpu, const uint64_t (*ranges)[2], int nranges, const uint64_t *clean,
                            int nclean, mv_err *err);

/* KVM_SET_GUEST_DEBUG: flags 0 turns guest debugging off. */
int mv_vcpu_set_debug(mv_vcpu *cpu, unsigned flags, mv_err *err);

#define MV_HW_BREAKPOINTS 4   /* DR0..DR3 */
/* Instruction breakpoints in the debug registers at up to four linear
 * addresses (n = 0 removes them): a debug exit (exception 1, bit i of dr6
 * set) before the instruction at addrs[i] runs.  Whether a host fires them
 * is a probe's question (mv.host() in Lua); the soft backend has none. */
int mv_vcpu_set_hw_breakpoints(mv_vcpu *cpu, const uint64_t *addrs, int n, mv_err *err);

/* Once-breakpoints, on backends that see every instruction (soft; kvm:
 * -ENOTSUP): linear addresses where a run stops, before the instruction,
 * with a debug exit (exception 3, rip there) the first time it gets there
 * after they were armed; resuming runs the instruction.  Nothing is written
 * to guest memory, so coverage costs the emulator no re-translation.
 * mv_vcpu_set_once_breakpoints replaces the set (n = 0 removes it) and arms
 * it; mv_vcpu_arm_once_breakpoints arms every one again in O(1). */
int mv_vcpu_set_once_breakpoints(mv_vcpu *cpu, const uint64_t *addrs, size_t n, mv_err *err);
int mv_vcpu_arm_once_breakpoints(mv_vcpu *cpu, mv_err *err);

/* zx_vcpu_kick: async-signal-safe and thread-safe.  The VCPU leaves the
 * guest as soon as possible; a kick before enter makes that enter return a
 * KICK exit at once. */
void mv_vcpu_kick(mv_vcpu *cpu);

/* zx_vcpu_interrupt: queue an interrupt vector; it is injected when the
 * guest can take it. */
int mv_vcpu_interrupt(mv_vcpu *cpu, uint32_t vector, mv_err *err);

int mv_vcpu_read_state(mv_vcpu *cpu, mv_regs *regs, mv_err *err);
int mv_vcpu_write_state(mv_vcpu *cpu, const mv_regs *regs, mv_err *err);
int mv_vcpu_read_sregs(mv_vcpu *cpu, mv_sregs *sregs, mv_err *err);
typedef struct mv_fpu {
  uint8_t st[8][10];       /* x87 ST0..ST7, 80-bit extended precision, little-endian */
  uint16_t fcw, fsw;
  uint8_t ftw;             /* abridged tag word (FXSAVE format): bit i set = ST register i valid */
  uint32_t mxcsr;
  uint8_t xmm[16][16];     /* xmm8-15 exist in long mode only */
} mv_fpu;

/* x87 and SSE state (on KVM through the XSAVE area). */
int mv_vcpu_read_fpu(mv_vcpu *cpu, mv_fpu *fpu, mv_err *err);
int mv_vcpu_write_fpu(mv_vcpu *cpu, const mv_fpu *fpu, mv_err *err);

/* Sets what CPUID leaf/subleaf returns (eax, ebx, ecx, edx), on top of what
 * the host supports.  On KVM, before the VCPU's first enter. */
int mv_vcpu_set_cpuid(mv_vcpu *cpu, uint32_t leaf, uint32_t subleaf, const uint32_t regs[4], mv_err *err);

/* KVM_IRQ_LINE on the in-kernel irqchip (guest created with irqchip). */
int mv_guest_irq(mv_guest *g, uint32_t line, int level, mv_err *err);

/* Model-specific registers, one at a time (KVM_GET_MSRS / KVM_SET_MSRS). */
int mv_vcpu_read_msr(mv_vcpu *cpu, uint32_t index, uint64_t *value, mv_err *err);
int mv_vcpu_write_msr(mv_vcpu *cpu, uint32_t index, uint64_t value, mv_err *err);
int mv_vcpu_write_sregs(mv_vcpu *cpu, const mv_sregs *sregs, mv_err *err);

/* {====================================================== SMP runs (smp.c) */

/* Why mv_guest_run returned. */
typedef enum mv_run_reason {
  MV_RUN_STOP = 0,     /* mv_guest_stop (a handler, another thread or a signal handler) */
  MV_RUN_HALTED,       /* every VCPU halted (hlt exit) with no queued interrupt to wake it */
  MV_RUN_TIMEOUT,      /* timeout_ns passed */
  MV_RUN_EXIT,         /* a VCPU's exit no trap consumed (unclaimed IO, shutdown, debug, a
                          kick, a failing handler: exit.handler_failed); the others were stopped */
} mv_run_reason;

typedef struct mv_run_opts {
  uint64_t timeout_ns;   /* 0: no limit */
  uint64_t quantum;      /* soft backend: guest instructions per turn (0: 1000) */
} mv_run_opts;

typedef struct mv_run_result {
  mv_run_reason reason;
  int cpu;               /* index into cpus[] of the VCPU whose exit ended the run, or -1 */
  mv_exit exit;          /* that exit (MV_RUN_EXIT) */
  uint64_t turns;        /* soft: quanta run (all VCPUs) */
} mv_run_result;

/* Runs cpus[0..n) of g together until a stop condition.  On KVM each VCPU
 * gets its own thread in KVM_RUN and the caller waits; trap callbacks run on
 * the thread of the VCPU that exited (a callback may take its own lock: the
 * Lua bindings serialise theirs).  On the soft backend the caller's thread
 * runs the VCPUs in turn, quantum instructions each, in the order given:
 * the same guest, inputs and quantum give the same interleaving.  Returns 0
 * with *res filled, or -errno: a VCPU's enter failed (the message names it),
 * a VCPU listed twice or running already (-EBUSY), the guest closed by a
 * callback (-EBADF, the guest is closed once every VCPU stopped). */
int mv_guest_run(mv_guest *g, mv_vcpu *const *cpus, int n, const mv_run_opts *opts, mv_run_result *res,
                 mv_err *err);
/* Ends the guest's current mv_guest_run (MV_RUN_STOP) as soon as every VCPU
 * left the guest; nothing when none runs.  Thread-safe and async-signal-safe. */
void mv_guest_stop(mv_guest *g);
/* True while mv_guest_run runs g (for embedders that must not re-enter). */
bool mv_guest_running(const mv_guest *g);

#endif
