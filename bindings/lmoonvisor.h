/*
 * lmoonvisor.h - what the binding files of moonvisor.core share: metatable
 * names, the userdata layouts and the checkers that reject closed handles.
 */
#ifndef LMOONVISOR_H
#define LMOONVISOR_H

#include <lauxlib.h>
#include <lua.h>
#include "../core/moonvisor.h"

#define MV_GUEST "moonvisor.Guest"
#define MV_VMO "moonvisor.Vmo"
#define MV_VCPU "moonvisor.Vcpu"
#define MV_TRAP "moonvisor.Trap"

/* User value 1: the table of trap handlers, keyed by trap id. */
typedef struct lmv_trace lmv_trace;

typedef struct LGuest {
  mv_guest *g;      /* NULL once closed */
  lmv_trace *trace; /* the open trace file, or NULL */
} LGuest;

/* lstats.c: ends g's trace, closing its file. */
void lmv_trace_close(LGuest *g);

typedef struct LVmo {
  mv_vmo *vmo;      /* NULL once closed; mappings keep their own reference */
} LVmo;

/* What the exit table handlers receive holds now (lutil.c), so that an
 * exit sets only the fields that differ from the previous one. */
typedef struct lmv_exit_fields {
  bool valid, io, write, has_data;
  int type;
  uint32_t size;
  uint64_t addr, data;
} lmv_exit_fields;

/* lrun.c: the lock around the Lua state while guest:run's VCPU threads run. */
typedef struct lmv_lock lmv_lock;
void lmv_lock_acquire(lmv_lock *k);
void lmv_lock_release(lmv_lock *k);

/* The Lua side of a VCPU.  User values: 1 = its Guest, 2 = the exit table
 * reused for every handler call, 3 = the last handler error. */
typedef struct LVcpu {
  mv_vcpu *cpu;     /* NULL once closed */
  lua_State *L;     /* the thread inside cpu:enter(), NULL outside */
  int base;         /* stack index of the VCPU in L during enter; then the exit table,
                       the message handler, the guest's handler table, the key table
                       (lmv_pushkeys) and the handler of trap handler_trap follow it */
  int handler_trap; /* during enter: the trap whose handler is at base+5 (0: none) */
  int fast_key;     /* handler_trap * 2 + 1 when a write to it may take lmv_trap_callback's
                       short path (its handler declares no parameters, its trap is no
                       doorbell, it runs unprotected without a lock), else 0; set with
                       handler_trap, cleared whenever that is.  guest:run clears it before
                       its VCPU threads start, so they never read handler_trap outside
                       the lock, and nothing writes it while it is 0 */
  bool unwind;      /* during enter: inside its one protected frame, so handlers of
                       accesses are called unprotected (mv_vcpu_can_unwind) */
  lmv_lock *lock;   /* during guest:run: the lock its handlers take (lrun.c), else NULL */
  lmv_exit_fields filled;   /* the exit table's fields */
  unsigned debug;   /* the MV_DEBUG_* flags last set by cpu:debug */
  uint64_t hw[MV_HW_BREAKPOINTS];   /* and its hardware breakpoints */
  int nhw;
} LVcpu;

/* Forgets the handler cached at base+5 (handler_trap and fast_key go
 * together).  fast_key is written only when set: under guest:run it is 0,
 * and VCPU threads read it without the lock. */
static inline void lmv_forget_handler(LVcpu *v) {
  v->handler_trap = 0;
  if (v->fast_key) v->fast_key = 0;
}

/* A trap handle.  User value 1 = its Guest. */
typedef struct LTrap {
  int id;           /* 0 once removed */
  int kind;         /* mv_trap_kind */
  lua_Integer addr, size;
} LTrap;

/* Checkers: raise "<what>: attempt to use a closed guest" etc. */
mv_guest *lmv_checkguest(lua_State *L, int idx, const char *what);
LGuest *lmv_toguest(lua_State *L, int idx);
mv_vmo *lmv_checkvmo(lua_State *L, int idx, const char *what);
LVcpu *lmv_checkvcpu(lua_State *L, int idx, const char *what);

/* An integer argument, with floats accepted only when they hold an integer. */
lua_Integer lmv_checkint(lua_State *L, int idx, const char *what, const char *name);
/* Adds methods to module.<type> ("Guest", "Vcpu"), the method table of a
 * userdata type opened earlier; the module table is on the stack top. */
void lmv_add_methods(lua_State *L, const char *type, const luaL_Reg *methods);

/* The message handler every pcall from C uses: a string with a traceback. */
int lmv_msghandler(lua_State *L);

/* Raises the core's message (it already names the call and the value). */
int lmv_raise(lua_State *L, const mv_err *err);
/* The same with the call named what (for methods built on another core call). */
int lmv_raise_as(lua_State *L, const char *what, const mv_err *err);
/* The same for core calls that name themselves differently (the core's
 * "guest: ..." for mv.guest): a leading "from: " becomes "what: ", any other
 * message (an environment failure such as "/dev/kvm: ...") gets "what: " in front. */
int lmv_raise_renamed(lua_State *L, const char *what, const char *from, const mv_err *err);
/* A table argument (idx), or "<what>: <name> must be a table, got <type>". */
void lmv_checktable(lua_State *L, int idx, const char *what, const char *name);
/* A string argument (no numbers), or "<what>: <name> must be a string, got <type>". */
const char *lmv_checklstring(lua_State *L, int idx, size_t *len, const char *what, const char *name);
/* "moonvisor.Vmo" for our userdata, the plain type name otherwise. */
const char *lmv_typename(lua_State *L, int idx);
/* 64-bit hexadecimal, which lua_pushfstring cannot print. */
const char *lmv_hex(char buf[20], uint64_t v);

/* The strings used as keys of exit and register tables, interned once per
 * Lua state: pushing one is a rawgeti from this table (no hashing, no
 * strcmp).  Keys LMV_K_*; the name of exit type t at LMV_K_TYPENAME + t;
 * register i (lvcpu.c's order) at LMV_K_REG + i. */
enum {
  LMV_K_TYPE = 1, LMV_K_PORT, LMV_K_ADDR, LMV_K_SIZE, LMV_K_WRITE, LMV_K_DATA, LMV_K_REASON,
  LMV_K_RIP, LMV_K_EXCEPTION, LMV_K_DR6, LMV_K_DR7, LMV_K_VECTOR, LMV_K_HW_REASON, LMV_K_CPU,
  LMV_K_SUBERROR, LMV_K_EVENT, LMV_K_ERROR_CODE, LMV_K_TYPENAME = 32, LMV_K_REG = 64,
};
void lmv_pushkeys(lua_State *L);
/* Registers its names (lvcpu.c) to the key table: regs[i] at LMV_K_REG + i. */
void lmv_setkeys_regs(lua_State *L, const char *const *regs, int n);

/* Pushes a fresh table describing an exit (what enter returns); keys is the
 * stack index of the key table. */
void lmv_pushexit(lua_State *L, int keys, const mv_exit *e);
/* Updates the exit table of v's enter in place for a trap exit, setting only
 * the fields that changed since the last one: the hot path. */
void lmv_fillexit_changed(lua_State *L, LVcpu *v, const mv_exit *e);
static inline void lmv_fillexit(lua_State *L, LVcpu *v, const mv_exit *e) {
  const lmv_exit_fields *f = &v->filled;
  if (!f->valid || f->addr != e->addr || f->type != (int)e->type || f->size != e->size || f->write != e->write ||
      (e->write && f->data != e->data))
    lmv_fillexit_changed(L, v, e);   /* else the same access again: nothing to set */
}

/* Lua-side little-endian accessors shared by Vmo and Guest: u8/u16/u32/u64. */
typedef int (*lmv_rw_fn)(void *obj, uint64_t off, void *buf, uint64_t len, int write, mv_err *err);
int lmv_uint_access(lua_State *L, void *obj, lmv_rw_fn rw, const char *what, int bytes);

/* Async-signal-safe: kicks the VCPU the calling thread is inside
 * cpu:enter() with; returns 0 when there is none (for SIGINT handlers). */
int lmv_kick_entering(void);

/* Trap callback used for Lua handlers. */
int lmv_trap_callback(void *cookie, mv_vcpu *cpu, mv_exit *exit, uint64_t *value);
/* The arguments a trap handler at idx gets, as lmv_trap_callback's cookie:
 * (exit, cpu), or fewer when a Lua function declares fewer (lguest.c).
 * Raises "<what>: handler must be a function" for anything not callable. */
void *lmv_handler_nargs(lua_State *L, int idx, const char *what);

int lmv_open_vmo(lua_State *L);
int lmv_open_guest(lua_State *L);
int lmv_open_vcpu(lua_State *L);
int lmv_open_trap(lua_State *L);
int lmv_open_snapshot(lua_State *L);
int lmv_open_stats(lua_State *L);
int lmv_open_cpu(lua_State *L);
int lmv_open_disasm(lua_State *L);
/* lrecord.c: g:record, g:replay, moonvisor.Record; and enter's errors, which
 * for a diverged replay carry the divergence and the registers. */
int lmv_open_record(lua_State *L);
int lmv_raise_enter(lua_State *L, mv_vcpu *cpu, const mv_err *err);
/* lafl.c: core.afl (AFL++ shared memory, forkserver pipes, the stand-in child). */
int lmv_open_afl(lua_State *L);
/* lonce.c: cpu:once_breakpoints, cpu:arm_breakpoints. */
int lmv_open_once(lua_State *L);
/* lsocket.c: core.tcp_listen, core.tcp_connect (for the gdb stub). */
int lmv_open_socket(lua_State *L);
int lmv_open_term(lua_State *L);
/* lrun.c: guest:run, guest:stop. */
int lmv_open_run(lua_State *L);
/* Async-signal-safe: stops the guest:run this thread waits in; 1 if there was one. */
int lmv_stop_running(void);

#endif
