/*
 * lvcpu.c - the moonvisor.Vcpu userdata (g:vcpu{...}): enter, kick,
 * interrupt, registers as tables or single fields (cpu.rax), special
 * registers.  cpu:enter() is where Lua handlers get called: it lays out the
 * stack the trap callback in lguest.c relies on.  It also records, per
 * thread, the VCPU inside enter, so a SIGINT handler can kick it.
 */
#include <stdio.h>
#include <string.h>
#include "lmoonvisor.h"

LVcpu *lmv_checkvcpu(lua_State *L, int idx, const char *what) {
  LVcpu *v = luaL_testudata(L, idx, MV_VCPU);
  if (!v) {
    luaL_error(L, "%s: expected a moonvisor.Vcpu, got %s", what, lmv_typename(L, idx));
    return NULL;
  }
  if (!v->cpu) luaL_error(L, "%s: attempt to use a closed vcpu", what);
  if (mv_guest_is_closed(mv_vcpu_guest(v->cpu))) luaL_error(L, "%s: attempt to use a vcpu of a closed guest", what);
  return v;
}

int lmv_vcpu_new(lua_State *L) {
  mv_guest *g = lmv_checkguest(L, 1, "guest:vcpu");
  lua_Integer entry = 0;
  if (!lua_isnoneornil(L, 2)) {
    lmv_checktable(L, 2, "guest:vcpu", "options");
    if (lua_getfield(L, 2, "entry") != LUA_TNIL) entry = lmv_checkint(L, -1, "guest:vcpu", "entry");
    if (lua_getfield(L, 2, "mode") != LUA_TNIL &&
        (lua_type(L, -1) != LUA_TSTRING || strcmp(lua_tostring(L, -1), "real") != 0))
      return luaL_error(L, "guest:vcpu: mode %s is not available in this build (modes: \"real\")",
                        lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : luaL_typename(L, -1));
    lua_pop(L, 2);
  }
  if (entry < 0) return luaL_error(L, "guest:vcpu: entry %I is negative", (LUAI_UACINT)entry);
  LVcpu *v = lua_newuserdatauv(L, sizeof *v, 3);
  memset(v, 0, sizeof *v);
  luaL_setmetatable(L, MV_VCPU);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);   /* the VCPU keeps its guest alive */
  lua_createtable(L, 0, 8);
  lua_setiuservalue(L, -2, 2);   /* the exit table handlers receive */
  mv_err err;
  if (mv_vcpu_create(g, (uint64_t)entry, &v->cpu, &err) < 0) return lmv_raise(L, &err);
  mv_vcpu_set_user(v->cpu, v);
  return 1;
}

/* {====================================================== enter */

static int raise_handler_error(lua_State *L, const mv_exit *e) {
  lua_getiuservalue(L, 1, 3);
  const char *msg = lua_tostring(L, -1);
  char hex[20];
  if (!msg) msg = "the handler could not be called (Lua stack exhausted)";
  if (e->type == MV_EXIT_IO)
    lua_pushfstring(L, "vcpu:enter: io handler for port %s (%s, %d bytes) failed: %s", lmv_hex(hex, e->addr),
                    e->write ? "out" : "in", (int)e->size, msg);
  else
    lua_pushfstring(L, "vcpu:enter: %s handler for %s (%s, %d bytes) failed: %s", mv_exit_type_name(e->type),
                    lmv_hex(hex, e->addr), e->write ? "write" : "read", (int)e->size, msg);
  lua_pushnil(L);
  lua_setiuservalue(L, 1, 3);
  return lua_error(L);
}

/* cpu:enter{ timeout_ms = N }: N > 0, fractions allowed; 0 or nil: no limit. */
static uint64_t opt_timeout_ns(lua_State *L, int idx, const char *what) {
  if (lua_isnoneornil(L, idx)) return 0;
  lmv_checktable(L, idx, what, "options");
  uint64_t ns = 0;
  int ty = lua_getfield(L, idx, "timeout_ms");
  if (ty != LUA_TNIL) {
    int isnum = 0;
    lua_Number ms = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumberx(L, -1, &isnum) : 0;
    if (!isnum || !(ms >= 0) || ms > 1e9)
      luaL_error(L, "%s: timeout_ms must be a number of milliseconds in 0..1e9, got %s", what,
                 isnum ? lua_tostring(L, -1) : lmv_typename(L, -1));
    ns = (uint64_t)(ms * 1e6);
    if (ms > 0 && ns == 0) ns = 1;
  }
  lua_pop(L, 1);
  return ns;
}

/* The VCPU this thread is running (innermost enter), for lmv_kick_entering. */
static _Thread_local LVcpu *volatile entering;

/* Async-signal-safe: kicks the VCPU this thread is entering, if any.  Called
 * from the executable's SIGINT handler; returns 1 when there was one. */
int lmv_kick_entering(void) {
  LVcpu *v = entering;
  if (!v || !v->cpu) return 0;
  mv_vcpu_kick(v->cpu);
  return 1;
}

/* Lays out, above the VCPU at index 1, what the trap callback (lguest.c)
 * finds at base+1..base+5. */
static void push_enter_stack(lua_State *L) {
  lua_getiuservalue(L, 1, 2);        /* base+1: exit table */
  lua_pushcfunction(L, lmv_msghandler);  /* base+2 */
  lua_getiuservalue(L, 1, 1);
  lua_getiuservalue(L, -1, 1);       /* base+3: the guest's handlers */
  lua_remove(L, -2);
  lmv_pushkeys(L);                   /* base+4: the interned keys */
  lua_pushnil(L);                    /* base+5: the last handler called */
  luaL_checkstack(L, 8, "vcpu:enter");   /* for every handler call below */
}

typedef struct enter_call {
  uint64_t timeout_ns;
  mv_exit e;
  mv_err err;
  int r;
} enter_call;

/* The protected frame of an enter whose handlers run unprotected: (vcpu,
 * enter_call).  A handler's error jumps from the middle of the core's exit
 * loop back to the lua_pcall in vcpu_enter, which lets the core finish. */
static int enter_protected(lua_State *L) {
  enter_call *ec = lua_touserdata(L, 2);
  lua_settop(L, 1);
  LVcpu *v = lua_touserdata(L, 1);
  push_enter_stack(L);
  v->L = L;
  v->base = 1;
  lmv_forget_handler(v);
  v->unwind = true;
  ec->r = mv_vcpu_enter_timeout(v->cpu, ec->timeout_ns, &ec->e, &ec->err);
  return 0;
}

static int vcpu_enter(lua_State *L) {
  LVcpu *v = lmv_checkvcpu(L, 1, "vcpu:enter");
  enter_call ec = { .timeout_ns = opt_timeout_ns(L, 2, "vcpu:enter") };
  lua_settop(L, 1);
  if (v->L && v->lock) return luaL_error(L, "vcpu:enter: VCPU %d is running in guest:run", mv_vcpu_id(v->cpu));
  if (v->L) return luaL_error(L, "vcpu:enter: called from inside a trap handler of the same VCPU");
  LVcpu *outer_entering = entering;   /* a handler may enter another VCPU */
  entering = v;
  int keys = 5;   /* where the key table is for lmv_pushexit */
  if (mv_vcpu_can_unwind(v->cpu)) {
    lua_pushcfunction(L, lmv_msghandler);   /* 2 */
    lua_pushcfunction(L, enter_protected);
    lua_pushvalue(L, 1);
    lua_pushlightuserdata(L, &ec);
    int st = lua_pcall(L, 2, 0, 2);
    entering = outer_entering;
    v->L = NULL;
    v->unwind = false;
    if (st != LUA_OK) {   /* stack: vcpu, msghandler, error */
      int r = 0;
      if (v->cpu) {   /* the core still delivers queued doorbells: their callbacks need enter's layout */
        lua_pushvalue(L, 1);
        v->base = lua_gettop(L);
        push_enter_stack(L);
        v->L = L;
        lmv_forget_handler(v);
        r = mv_vcpu_enter_unwound(v->cpu, &ec.err);
        v->L = NULL;
        lua_settop(L, 3);
      }
      if (r < 0) return lmv_raise_enter(L, v->cpu, &ec.err);
      if (r == 0) return lua_error(L);   /* not from a handler (no room on the stack, ...) */
      lua_setiuservalue(L, 1, 3);
      return raise_handler_error(L, &ec.e);
    }
    lua_settop(L, 1);
    lmv_pushkeys(L);
    keys = 2;
  } else {
    push_enter_stack(L);
    v->L = L;
    v->base = 1;
    lmv_forget_handler(v);
    ec.r = mv_vcpu_enter_timeout(v->cpu, ec.timeout_ns, &ec.e, &ec.err);
    entering = outer_entering;
    v->L = NULL;
  }
  if (ec.r < 0) return lmv_raise_enter(L, v->cpu, &ec.err);
  if (ec.e.handler_failed) return raise_handler_error(L, &ec.e);
  lmv_pushexit(L, keys, &ec.e);
  return 1;
}

/* Pushes { singlestep = bool, breakpoints = bool[, hw = { addr... }] }. */
static void push_debug(lua_State *L, unsigned flags, const uint64_t *hw, int nhw) {
  lua_createtable(L, 0, 3);
  lua_pushboolean(L, flags & MV_DEBUG_SINGLESTEP);
  lua_setfield(L, -2, "singlestep");
  lua_pushboolean(L, flags & MV_DEBUG_SW_BREAKPOINTS);
  lua_setfield(L, -2, "breakpoints");
  if (nhw == 0) return;
  lua_createtable(L, nhw, 0);
  for (int i = 0; i < nhw; i++) {
    lua_pushinteger(L, (lua_Integer)hw[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "hw");
}

/* The hw = { addr, ... } option of cpu:debug: at most MV_HW_BREAKPOINTS
 * integers.  Returns their number. */
static int check_hw_breakpoints(lua_State *L, int opts, uint64_t *out) {
  int ty = lua_getfield(L, opts, "hw");
  int n = 0;
  if (ty != LUA_TNIL) {
    if (ty != LUA_TTABLE) return luaL_error(L, "vcpu:debug: hw must be a list of addresses, got %s", lmv_typename(L, -1));
    lua_Integer len = luaL_len(L, -1);
    if (len > MV_HW_BREAKPOINTS)
      return luaL_error(L, "vcpu:debug: %I hardware breakpoints asked, the CPU has %d", (LUAI_UACINT)len, MV_HW_BREAKPOINTS);
    for (n = 0; n < (int)len; n++) {
      lua_geti(L, -1, n + 1);
      if (!lua_isinteger(L, -1))
        return luaL_error(L, "vcpu:debug: hw[%d] must be an integer address, got %s", n + 1, lmv_typename(L, -1));
      out[n] = (uint64_t)lua_tointeger(L, -1);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  return n;
}

/* cpu:debug{ singlestep = bool, breakpoints = bool, hw = { addr... } } (no
 * table: all off).  Returns the previous settings, so cpu:debug(old) puts
 * them back. */
static int vcpu_debug(lua_State *L) {
  LVcpu *v = lmv_checkvcpu(L, 1, "vcpu:debug");
  unsigned flags = 0;
  uint64_t hw[MV_HW_BREAKPOINTS];
  int nhw = 0;
  if (!lua_isnoneornil(L, 2)) {
    lmv_checktable(L, 2, "vcpu:debug", "options");
    static const struct { const char *key; unsigned flag; } opts[] = {
      { "singlestep", MV_DEBUG_SINGLESTEP }, { "breakpoints", MV_DEBUG_SW_BREAKPOINTS },
    };
    for (size_t i = 0; i < 2; i++) {
      int ty = lua_getfield(L, 2, opts[i].key);
      if (ty != LUA_TNIL && ty != LUA_TBOOLEAN)
        return luaL_error(L, "vcpu:debug: %s must be a boolean, got %s", opts[i].key, lmv_typename(L, -1));
      if (lua_toboolean(L, -1)) flags |= opts[i].flag;
      lua_pop(L, 1);
    }
    nhw = check_hw_breakpoints(L, 2, hw);
  }
  mv_err err;
  if ((nhw || v->nhw) && mv_vcpu_set_hw_breakpoints(v->cpu, hw, nhw, &err) < 0) return lmv_raise(L, &err);
  if (mv_vcpu_set_debug(v->cpu, flags, &err) < 0) return lmv_raise(L, &err);
  push_debug(L, v->debug, v->hw, v->nhw);
  v->debug = flags;
  memcpy(v->hw, hw, sizeof(uint64_t) * (size_t)nhw);
  v->nhw = nhw;
  return 1;
}

/* Integers from list t[field][i] (and, with pairs, t[field][i][1..2]) into out. */
static int sandbox_list(lua_State *L, int t, const char *field, uint64_t *out, int pairs, int max) {
  int ty = lua_getfield(L, t, field), n = 0;
  if (ty != LUA_TNIL) {
    if (ty != LUA_TTABLE) return luaL_error(L, "vcpu:declare_sandbox: %s must be a list, got %s", field, lmv_typename(L, -1));
    lua_Integer len = luaL_len(L, -1);
    if (len > max) return luaL_error(L, "vcpu:declare_sandbox: %I %s (at most %d)", (LUAI_UACINT)len, field, max);
    for (n = 0; n < (int)len; n++) {
      lua_geti(L, -1, n + 1);
      for (int k = 0; k < (pairs ? 2 : 1); k++) {
        if (pairs) lua_geti(L, -1, k + 1);
        if (!lua_isinteger(L, -1))
          return luaL_error(L, "vcpu:declare_sandbox: %s[%d] must be %s", field, n + 1,
                            pairs ? "a pair of integers { gpa, size }" : "an integer address");
        out[n * (pairs ? 2 : 1) + k] = (uint64_t)lua_tointeger(L, -1);
        if (pairs) lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  return n;
}

/* cpu:declare_sandbox{ ranges = { { gpa, size }, ... }, clean = { rip, ... } }
 * (mv_vcpu_declare_sandbox; moonvisor.stubs makes it for mode "user"); no
 * table withdraws it. */
static int vcpu_declare_sandbox(lua_State *L) {
  LVcpu *v = lmv_checkvcpu(L, 1, "vcpu:declare_sandbox");
  uint64_t ranges[16][2], clean[16];
  int nranges = 0, nclean = 0;
  if (!lua_isnoneornil(L, 2)) {
    lmv_checktable(L, 2, "vcpu:declare_sandbox", "options");
    nranges = sandbox_list(L, 2, "ranges", &ranges[0][0], 1, 16);
    nclean = sandbox_list(L, 2, "clean", clean, 0, 16);
  }
  mv_err err;
  if (mv_vcpu_declare_sandbox(v->cpu, (const uint64_t (*)[2])ranges, nranges, clean, nclean, &err) < 0)
    return lmv_raise(L, &err);
  return 0;
}

/* cpu:msr(index) -> value; cpu:msr(index, value) writes it. */
static int vcpu_msr(lua_State *L) {
  LVcpu *v = lmv_checkvcpu(L, 1, "vcpu:msr");
  lua_Integer index = lmv_checkint(L, 2, "vcpu:msr", "index");
  if (index < 0 || index > 0xffffffff) return luaL_error(L, "vcpu:msr: index %I is not a 32-bit MSR number", (LUAI_UACINT)index);
  mv_err err;
  if (lua_isnoneornil(L, 3)) {
    uint64_t value;
    if (mv_vcpu_read_msr(v->cpu, (uint32_t)index, &value, &err) < 0) return lmv_raise(L, &err);
    lua_pushinteger(L, (lua_Integer)value);
    return 1;
  }
  lua_Integer value = lmv_checkint(L, 3, "vcpu:msr", "value");
  if (mv_vcpu_write_msr(v->cpu, (uint32_t)index, (uint64_t)value, &err) < 0) return lmv_raise(L, &err);
  return 0;
}

static int vcpu_kick(lua_State *L) {
  mv_vcpu_kick(lmv_checkvcpu(L, 1, "vcpu:kick")->cpu);
  return 0;
}

static int vcpu_interrupt(lua_State *L) {
  LVcpu *v = lmv_checkvcpu(L, 1, "vcpu:interrupt");
  lua_Integer vec = lmv_checkint(L, 2, "vcpu:interrupt", "vector");
  if (vec < 0 || vec > 255) return luaL_error(L, "vcpu:interrupt: vector %I is not in 0..255", (LUAI_UACINT)vec);
  mv_err err;
  if (mv_vcpu_interrupt(v->cpu, (uint32_t)vec, &err) < 0) return lmv_raise(L, &err);
  return 0;
}

/* {====================================================== registers */

#define REG(name) { #name, offsetof(mv_regs, name) }
static const struct { const char *name; size_t off; } reg_fields[] = {
  REG(rax), REG(rbx), REG(rcx), REG(rdx), REG(rsi), REG(rdi), REG(rbp), REG(rsp),
  REG(r8), REG(r9), REG(r10), REG(r11), REG(r12), REG(r13), REG(r14), REG(r15),
  REG(rip), REG(rflags),
};
#define NREGS (sizeof reg_fields / sizeof reg_fields[0])

static uint64_t *reg_slot(mv_regs *r, size_t i) { return (uint64_t *)((char *)r + reg_fields[i].off); }

/* The register name -> number table, one per Lua state (registry key: the
 * address of regnums_id): a string key costs one lookup of its interned
 * hash, no strcmp. */
static const char regnums_id = 0;
static void push_regnums(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &regnums_id) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_createtable(L, 0, (int)NREGS);
  for (size_t i = 0; i < NREGS; i++) {
    lua_pushinteger(L, (lua_Integer)i);
    lua_setfield(L, -2, reg_fields[i].name);
  }
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &regnums_id);
}

/* The number of the name (a string) at idx in the name table at nums
 * (push_regnums); -1 if none. */
static int name_number(lua_State *L, int idx, int nums) {
  if (lua_type(L, idx) != LUA_TSTRING) return -1;
  lua_pushvalue(L, idx);
  int isnum;
  lua_Integer i = (lua_rawget(L, nums), lua_tointegerx(L, -1, &isnum));
  lua_pop(L, 1);
  return isnum ? (int)i : -1;
}

static void read_regs(lua_State *L, LVcpu *v, mv_regs *r, const char *what) {
  mv_err err;
  if (mv_vcpu_read_state(v->cpu, r, &err) < 0) {
    lua_pushfstring(L, "%s: %s", what, err.msg);
    lua_error(L);
  }
}

static int vcpu_read_state(lua_State *L) {
  LVcpu *v = lmv_checkvcpu(L, 1, "vcpu:read_state");
  mv_regs r;
  read_regs(L, v, &r, "vcpu:read_state");
  lmv_pushkeys(L);
  lua_createtable(L, 0, (int)NREGS);
  for (size_t i = 0; i < NREGS; i++) {
    lua_rawgeti(L, -2, LMV_K_REG + (lua_Integer)i);
    lua_pushinteger(L, (lua_Integer)*reg_slot(&r, i));
    lua_rawset(L, -3);
  }
  return 1;
}

static int vcpu_write_state(lua_State *L) {
  LVcpu *v = lmv_checkvcpu(L, 1, "vcpu:write_state");
  lmv_checktable(L, 2, "vcpu:write_state", "the register table");
  mv_regs r;
  read_regs(L, v, &r, "vcpu:write_state");
  lua_settop(L, 2);
  push_regnums(L);           /* 3 */
  lua_pushnil(L);
  while (lua_next(L, 2)) {   /* stack: cpu, t, nums, key, value */
    int i = name_number(L, -2, 3);
    if (i < 0) return luaL_error(L, "vcpu:write_state: unknown register %s", lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : luaL_typename(L, -2));
    *reg_slot(&r, (size_t)i) = (uint64_t)lmv_checkint(L, -1, "vcpu:write_state", reg_fields[i].name);
    lua_pop(L, 1);
  }
  mv_err err;
  if (mv_vcpu_write_state(v->cpu, &r, &err) < 0) return lmv_raise(L, &err);
  return 0;
}

/* {====================================================== special registers */

#define SEGF(f) { #f, offsetof(mv_segment, f), sizeof(((mv_segment *)0)->f) }
static const struct { const char *name; size_t off, size; } seg_fields[] = {
  SEGF(base), SEGF(limit), SEGF(selector), SEGF(type), SEGF(present), SEGF(dpl),
  SEGF(db), SEGF(s), SEGF(l), SEGF(g), SEGF(avl), SEGF(unusable),
};
#define SEGS(n) { #n, offsetof(mv_sregs, n) }
static const struct { const char *name; size_t off; } sreg_segs[] = {
  SEGS(cs), SEGS(ds), SEGS(es), SEGS(fs), SEGS(gs), SEGS(ss), SEGS(tr), SEGS(ldt),
};
static const struct { const char *name; size_t off; } sreg_u64[] = {
  SEGS(cr0), SEGS(cr2), SEGS(cr3), SEGS(cr4), SEGS(cr8), SEGS(efer), SEGS(apic_base),
};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static uint64_t get_field(const void *base, size_t off, size_t size) {
  uint64_t v = 0;
  memcpy(&v, (const char *)base + off, size);
  return v;
}

static void set_field(void *base, size_t off, size_t size, uint64_t v) { memcpy((char *)base + off, &v, size); }

static int vcpu_sregs(lua_State *L) {
  LVcpu *v = lmv_checkvcpu(L, 1, "vcpu:sregs");
  mv_sregs s;
  mv_err err;
  if (mv_vcpu_read_sregs(v->cpu, &s, &err) < 0) return lmv_raise(L, &err);
  lua_createtable(L, 0, 20);
  for (size_t i = 0; i < COUNT(sreg_segs); i++) {
    const mv_segment *seg = (const mv_segment *)((const char *)&s + sreg_segs[i].off);
    lua_createtable(L, 0, (int)COUNT(seg_fields));
    for (size_t f = 0; f < COUNT(seg_fields); f++) {
      lua_pushinteger(L, (lua_Integer)get_field(seg, seg_fields[f].off, seg_fields[f].size));
      lua_setfield(L, -2, seg_fields[f].name);
    }
    lua_setfield(L, -2, sreg_segs[i].name);
  }
  const mv_dtable *dt[2] = { &s.gdt, &s.idt };
  for (int i = 0; i < 2; i++) {
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, (lua_Integer)dt[i]->base);
    lua_setfield(L, -2, "base");
    lua_pushinteger(L, dt[i]->limit);
    lua_setfield(L, -2, "limit");
    lua_setfield(L, -2, i == 0 ? "gdt" : "idt");
  }
  for (size_t i = 0; i < COUNT(sreg_u64); i++) {
    lua_pushinteger(L, (lua_Integer)get_field(&s, sreg_u64[i].off, 8));
    lua_setfield(L, -2, sreg_u64[i].name);
  }
  return 1;
}

/* A field value as an integer that fits its field: bits = 64 takes any
 * integer (two's complement), narrower fields take 0 .. 2^bits - 1.  An
 * error names the field as in.name (name alone when in is NULL). */
static uint64_t check_field(lua_State *L, int idx, const char *what, const char *in, const char *name, int bits) {
  if (lua_isinteger(L, idx)) {   /* the common case, without lmv_checkint's work */
    lua_Integer v = lua_tointeger(L, idx);
    if (bits == 64 || (v >= 0 && !((uint64_t)v >> bits))) return (uint64_t)v;
  }
  char path[32];
  snprintf(path, sizeof path, "%s%s%s", in ? in : "", in ? "." : "", name);
  lua_Integer v = lmv_checkint(L, idx, what, path);
  if (bits < 64 && (v < 0 || (uint64_t)v >> bits)) {
    char hex[20];
    if (bits == 1) luaL_error(L, "%s: %s = %I must be 0 or 1", what, path, (LUAI_UACINT)v);
    else if (v < 0) luaL_error(L, "%s: %s = %I does not fit in %d bits (unsigned)", what, path, (LUAI_UACINT)v, bits);
    else luaL_error(L, "%s: %s = %s does not fit in %d bits", what, path, lmv_hex(hex, (uint64_t)v), bits);
  }
  return (uint64_t)v;
}

/* The key at idx as a field name, or an "unknown field" error. */
static const char *field_key(lua_State *L, int idx, const char *what, const char *in) {
  if (lua_type(L, idx) == LUA_TSTRING) return lua_tostring(L, idx);
  luaL_tolstring(L, idx, NULL);
  luaL_error(L, "%s: unknown field %s%s%s", what, in ? in : "", in ? "." : "", lua_tostring(L, -1));
  return NULL;
}

/* The segment field names as this Lua state interned them.  Lua keeps one
 * copy of each short string, so a key is a field name exactly when its
 * string is one of these: a pointer compare per name, with no lookup.  The
 * userdata (in the registry) keeps the strings alive in its table. */
typedef struct { const char *name[COUNT(seg_fields)]; } SegNames;
static const char segnames_id = 0;

static const SegNames *seg_names(lua_State *L) {
  SegNames *n;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &segnames_id) == LUA_TUSERDATA) {
    n = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return n;
  }
  lua_pop(L, 1);
  n = lua_newuserdatauv(L, sizeof *n, 1);
  lua_createtable(L, (int)COUNT(seg_fields), 0);
  for (size_t i = 0; i < COUNT(seg_fields); i++) {
    n->name[i] = lua_pushstring(L, seg_fields[i].name);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setiuservalue(L, -2, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &segnames_id);
  return n;
}

/* The index in seg_fields of the key at idx; -1 if it names no field. */
static int seg_field_number(lua_State *L, int idx, const SegNames *names) {
  if (lua_type(L, idx) != LUA_TSTRING) return -1;
  const char *k = lua_tostring(L, idx);
  for (int j = 0; j < (int)COUNT(seg_fields); j++)
    if (k == names->name[j]) return j;
  return -1;
}

static int vcpu_write_sregs(lua_State *L) {
  const char *what = "vcpu:write_sregs";
  LVcpu *v = lmv_checkvcpu(L, 1, what);
  lmv_checktable(L, 2, what, "the special register table");
  mv_sregs s;
  mv_err err;
  if (mv_vcpu_read_sregs(v->cpu, &s, &err) < 0) return lmv_raise(L, &err);
  lua_settop(L, 2);
  const SegNames *names = seg_names(L);
  lua_pushnil(L);
  while (lua_next(L, 2)) {   /* stack: cpu, t, key, value; nothing is written before all is checked */
    const char *k = field_key(L, -2, what, NULL);
    size_t i;
    for (i = 0; i < COUNT(sreg_segs) && strcmp(k, sreg_segs[i].name); i++) {}
    if (i < COUNT(sreg_segs)) {   /* a segment: any subset of its fields */
      if (!lua_istable(L, -1)) return luaL_error(L, "%s: %s must be a table, got %s", what, k, lmv_typename(L, -1));
      void *seg = (char *)&s + sreg_segs[i].off;
      lua_pushnil(L);
      while (lua_next(L, -2)) {
        int j = seg_field_number(L, -2, names);
        if (j < 0) return luaL_error(L, "%s: unknown field %s.%s", what, k, field_key(L, -2, what, k));
        int bits = seg_fields[j].size * 8;
        if (seg_fields[j].size == 1) bits = j == 3 ? 4 : j == 5 ? 2 : 1;   /* type, dpl, the flags */
        set_field(seg, seg_fields[j].off, seg_fields[j].size, check_field(L, -1, what, k, seg_fields[j].name, bits));
        lua_pop(L, 1);
      }
    } else if (strcmp(k, "gdt") == 0 || strcmp(k, "idt") == 0) {
      if (!lua_istable(L, -1)) return luaL_error(L, "%s: %s must be a table, got %s", what, k, lmv_typename(L, -1));
      mv_dtable *dt = k[0] == 'g' ? &s.gdt : &s.idt;
      lua_pushnil(L);
      while (lua_next(L, -2)) {
        const char *f = field_key(L, -2, what, k);
        int base = strcmp(f, "base") == 0;
        if (!base && strcmp(f, "limit")) return luaL_error(L, "%s: unknown field %s.%s", what, k, f);
        if (base) dt->base = check_field(L, -1, what, k, f, 64);
        else dt->limit = (uint16_t)check_field(L, -1, what, k, f, 16);
        lua_pop(L, 1);
      }
    } else {
      for (i = 0; i < COUNT(sreg_u64) && strcmp(k, sreg_u64[i].name); i++) {}
      if (i == COUNT(sreg_u64)) return luaL_error(L, "%s: unknown field %s", what, k);
      set_field(&s, sreg_u64[i].off, 8, check_field(L, -1, what, NULL, k, 64));
    }
    lua_pop(L, 1);
  }
  if (mv_vcpu_write_sregs(v->cpu, &s, &err) < 0) return lmv_raise(L, &err);
  return 0;
}

/* {====================================================== fields and lifetime */

static int vcpu_index(lua_State *L) {   /* methods first, then registers: cpu.rip */
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  int i = name_number(L, 2, lua_upvalueindex(2));
  if (i < 0) {   /* cpu.id: which VCPU (0, 1, ...: the APIC id), for handlers of guest:run */
    if (lua_type(L, 2) != LUA_TSTRING || strcmp(lua_tostring(L, 2), "id") != 0) return 0;
    LVcpu *v = luaL_checkudata(L, 1, MV_VCPU);
    if (!v->cpu) return 0;
    lua_pushinteger(L, mv_vcpu_id(v->cpu));
    return 1;
  }
  mv_regs r;
  read_regs(L, lmv_checkvcpu(L, 1, "vcpu.register"), &r, "vcpu.register");
  lua_pushinteger(L, (lua_Integer)*reg_slot(&r, (size_t)i));
  return 1;
}

static int vcpu_newindex(lua_State *L) {
  int i = name_number(L, 2, lua_upvalueindex(1));
  if (i < 0) return luaL_error(L, "vcpu: cannot set field %s (not a register)", luaL_tolstring(L, 2, NULL));
  LVcpu *v = lmv_checkvcpu(L, 1, "vcpu.register");
  lua_Integer val = lmv_checkint(L, 3, "vcpu.register", reg_fields[i].name);
  mv_regs r;
  read_regs(L, v, &r, "vcpu.register");
  *reg_slot(&r, (size_t)i) = (uint64_t)val;
  mv_err err;
  if (mv_vcpu_write_state(v->cpu, &r, &err) < 0) return lmv_raise_renamed(L, "vcpu.register", "vcpu:write_state", &err);
  return 0;
}

static int vcpu_close(lua_State *L) {   /* also accepts a closed vcpu, or one of a closed guest */
  LVcpu *v = luaL_testudata(L, 1, MV_VCPU);
  if (!v) return luaL_error(L, "vcpu:close: expected a moonvisor.Vcpu, got %s", lmv_typename(L, 1));
  if (v->L) return luaL_error(L, "vcpu:close: called from inside a trap handler of this VCPU");
  if (v->cpu) {
    mv_vcpu_destroy(v->cpu);
    v->cpu = NULL;
  }
  return 0;
}

static int vcpu_tostring(lua_State *L) {
  LVcpu *v = luaL_checkudata(L, 1, MV_VCPU);
  if (!v->cpu) lua_pushliteral(L, "Vcpu(closed)");
  else if (mv_guest_is_closed(mv_vcpu_guest(v->cpu))) lua_pushfstring(L, "Vcpu(%d, guest closed)", mv_vcpu_id(v->cpu));
  else lua_pushfstring(L, "Vcpu(%d, %s)", mv_vcpu_id(v->cpu), mv_guest_backend_name(mv_vcpu_guest(v->cpu)));
  return 1;
}

static int vcpu_guest(lua_State *L) {
  if (!luaL_testudata(L, 1, MV_VCPU))
    return luaL_error(L, "vcpu:guest: expected a moonvisor.Vcpu, got %s", lmv_typename(L, 1));
  lua_getiuservalue(L, 1, 1);
  return 1;
}

static const luaL_Reg vcpu_methods[] = {
  { "enter", vcpu_enter }, { "kick", vcpu_kick }, { "msr", vcpu_msr }, { "debug", vcpu_debug }, { "interrupt", vcpu_interrupt },
  { "declare_sandbox", vcpu_declare_sandbox },
  { "read_state", vcpu_read_state }, { "write_state", vcpu_write_state },
  { "sregs", vcpu_sregs }, { "write_sregs", vcpu_write_sregs },
  { "guest", vcpu_guest }, { "close", vcpu_close }, { NULL, NULL },
};

static const luaL_Reg vcpu_meta[] = {
  { "__gc", vcpu_close }, { "__close", vcpu_close }, { "__tostring", vcpu_tostring }, { NULL, NULL },
};

int lmv_open_vcpu(lua_State *L) {
  const char *names[NREGS];
  for (size_t i = 0; i < NREGS; i++) names[i] = reg_fields[i].name;
  lmv_setkeys_regs(L, names, (int)NREGS);
  luaL_newmetatable(L, MV_VCPU);
  luaL_setfuncs(L, vcpu_meta, 0);
  luaL_newlib(L, vcpu_methods);
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, "Vcpu");          /* core.Vcpu: the method table, for Lua extensions */
  push_regnums(L);
  lua_pushcclosure(L, vcpu_index, 2);
  lua_setfield(L, -2, "__index");
  push_regnums(L);
  lua_pushcclosure(L, vcpu_newindex, 1);
  lua_setfield(L, -2, "__newindex");
  lua_pop(L, 1);
  return 0;
}
