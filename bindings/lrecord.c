/*
 * lrecord.c - the moonvisor.Record userdata: g:record(path) and
 * g:replay(path[, { verify = bool, drive = bool }]) (core/record.h),
 * rec:close(), rec:summary(), rec:divergence(), g:state_hash(); the time
 * travel primitives rec:tell(), rec:seek(pos), rec:pause(bool),
 * rec:stop_at(n), rec:at_end() (moonvisor.timetravel uses them); and the
 * long form of a replay divergence that cpu:enter raises (with the VCPU's
 * registers).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "lmoonvisor.h"
#include "../core/record.h"

#define MV_RECORD "moonvisor.Record"

typedef struct LRecord {
  mv_rec *r;        /* NULL once freed */
} LRecord;

static LRecord *check_record(lua_State *L, int idx, const char *what) {
  LRecord *lr = luaL_testudata(L, idx, MV_RECORD);
  if (!lr) luaL_error(L, "%s: expected a moonvisor.Record, got %s", what, lmv_typename(L, idx));
  if (!lr->r) luaL_error(L, "%s: attempt to use a freed record", what);
  return lr;
}

/* A Record holding nothing yet (so an error leaks nothing), its guest as user value 1. */
static LRecord *new_record(lua_State *L) {
  LRecord *lr = lua_newuserdatauv(L, sizeof *lr, 1);
  lr->r = NULL;
  luaL_setmetatable(L, MV_RECORD);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  return lr;
}

static int guest_record(lua_State *L) {
  mv_guest *g = lmv_checkguest(L, 1, "guest:record");
  const char *path = lmv_checklstring(L, 2, NULL, "guest:record", "path");
  LRecord *lr = new_record(L);
  mv_err err;
  if (mv_record_start(g, path, &lr->r, &err) < 0) return lmv_raise(L, &err);
  return 1;
}

static int guest_replay(lua_State *L) {
  mv_guest *g = lmv_checkguest(L, 1, "guest:replay");
  const char *path = lmv_checklstring(L, 2, NULL, "guest:replay", "path");
  unsigned flags = 0;
  if (!lua_isnoneornil(L, 3)) {
    lmv_checktable(L, 3, "guest:replay", "options");
    lua_getfield(L, 3, "verify");
    if (lua_toboolean(L, -1)) flags |= MV_REPLAY_VERIFY;
    lua_getfield(L, 3, "drive");
    if (lua_toboolean(L, -1)) flags |= MV_REPLAY_DRIVE;
    lua_pop(L, 2);
  }
  lua_settop(L, 2);
  LRecord *lr = new_record(L);
  mv_err err;
  if (mv_replay_start(g, path, flags, &lr->r, &err) < 0) return lmv_raise(L, &err);
  return 1;
}

static int guest_state_hash(lua_State *L) {
  mv_guest *g = lmv_checkguest(L, 1, "guest:state_hash");
  uint64_t h;
  mv_err err;
  if (mv_guest_state_hash(g, &h, &err) < 0) return lmv_raise(L, &err);
  lua_pushinteger(L, (lua_Integer)h);
  return 1;
}

static void push_summary(lua_State *L, const mv_rec *r) {
  mv_rec_summary s;
  mv_rec_summary_get(r, &s);
  lua_createtable(L, 0, 9);
  lua_pushstring(L, mv_rec_path(r));
  lua_setfield(L, -2, "path");
  lua_pushstring(L, s.replay ? "replay" : "record");
  lua_setfield(L, -2, "mode");
  lua_pushboolean(L, s.finished);
  lua_setfield(L, -2, "finished");
  const struct { const char *k; uint64_t v; } f[] = {
    { "exits", s.exits }, { "records", s.records }, { "bytes", s.bytes }, { "inexact", s.inexact },
  };
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
    lua_pushinteger(L, (lua_Integer)f[i].v);
    lua_setfield(L, -2, f[i].k);
  }
  if (s.finished) {
    lua_pushinteger(L, (lua_Integer)s.state_hash);
    lua_setfield(L, -2, "state_hash");
    if (s.replay) {
      lua_pushinteger(L, (lua_Integer)s.expected_hash);
      lua_setfield(L, -2, "expected_hash");
    }
  }
}

static const char *const reg_names[18] = { "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9",
                                           "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags" };

/* The divergence's registers, one line ("rax=0x1 rbx=0x0 ... rflags=0x2"). */
static void push_regs_line(lua_State *L, const mv_divergence *d) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  const uint64_t *v = &d->regs.rax;
  for (int i = 0; i < 18; i++) {
    char s[48];
    snprintf(s, sizeof s, "%s%s=0x%" PRIx64, i ? " " : "", reg_names[i], v[i]);
    luaL_addstring(&b, s);
  }
  luaL_pushresult(&b);
}

/* Raises err's message followed by the divergence's registers, when a replay of
 * g diverged (cpu:enter, rec:close). */
static int lmv_raise_replay(lua_State *L, const mv_rec *r, const mv_err *err) {
  const mv_divergence *d = r ? mv_rec_divergence(r) : NULL;
  if (err->code != -EILSEQ || !d) return lmv_raise(L, err);
  if (strstr(err->msg, d->got)) lua_pushstring(L, err->msg);   /* it fit in one line */
  else lua_pushfstring(L, "%s\n  expected: %s\n  got:      %s", err->msg, d->expected, d->got);
  if (d->has_regs) {
    push_regs_line(L, d);
    lua_pushfstring(L, "%s\n  registers of vcpu %d: %s", lua_tostring(L, -2), d->vcpu, lua_tostring(L, -1));
  }
  return lua_error(L);
}

int lmv_raise_enter(lua_State *L, mv_vcpu *cpu, const mv_err *err) {
  return lmv_raise_replay(L, mv_guest_recorder(mv_vcpu_guest(cpu)), err);
}

static int record_close(lua_State *L) {
  LRecord *lr = check_record(L, 1, "record:close");
  mv_err err;
  if (mv_rec_finish(lr->r, &err) < 0) return lmv_raise_replay(L, lr->r, &err);
  push_summary(L, lr->r);
  return 1;
}

static int record_summary(lua_State *L) {
  push_summary(L, check_record(L, 1, "record:summary")->r);
  return 1;
}

static int record_divergence(lua_State *L) {
  const mv_divergence *d = mv_rec_divergence(check_record(L, 1, "record:divergence")->r);
  if (!d) return 0;
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, (lua_Integer)d->exit);
  lua_setfield(L, -2, "exit");
  lua_pushinteger(L, d->vcpu);
  lua_setfield(L, -2, "vcpu");
  lua_pushstring(L, d->expected);
  lua_setfield(L, -2, "expected");
  lua_pushstring(L, d->got);
  lua_setfield(L, -2, "got");
  if (d->has_regs) {
    lua_createtable(L, 0, 18);
    const uint64_t *v = &d->regs.rax;
    for (int i = 0; i < 18; i++) {
      lua_pushinteger(L, (lua_Integer)v[i]);
      lua_setfield(L, -2, reg_names[i]);
    }
    lua_setfield(L, -2, "regs");
  }
  return 1;
}

/* {====================================================== reading a log */

/* The iterator of mv.log_records: exit index (nil for other records), description. */
static int log_next(lua_State *L) {
  LRecord *lr = check_record(L, lua_upvalueindex(1), "mv.log_records");
  char text[256];
  bool is_exit = false;
  mv_rec_summary s;
  mv_rec_summary_get(lr->r, &s);
  int k = mv_log_next(lr->r, text, sizeof text, &is_exit);
  if (k == 0) return 0;
  if (is_exit) lua_pushinteger(L, (lua_Integer)s.exits);
  else lua_pushboolean(L, 0);
  lua_pushstring(L, text);
  return 2;
}

/* for index, text in mv.log_records(path) do ... end: every record of a log,
 * streamed (index: the exit index of an exit, false for other records). */
static int log_records(lua_State *L) {
  const char *path = lmv_checklstring(L, 1, NULL, "mv.log_records", "path");
  LRecord *lr = new_record(L);   /* its user value: the path */
  mv_err err;
  if (mv_log_open(path, &lr->r, &err) < 0) return lmv_raise_renamed(L, "mv.log_records", "guest:replay", &err);
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, log_next, 1);   /* stack: record, iterator */
  lua_insert(L, -2);
  lua_pushnil(L);
  lua_pushnil(L);
  lua_rotate(L, -3, -1);   /* iterator, nil, nil, record (to be closed) */
  return 4;
}

/* {====================================================== time travel */

static int record_tell(lua_State *L) {
  mv_rec_pos p;
  mv_rec_tell(check_record(L, 1, "record:tell")->r, &p);
  lua_createtable(L, 0, 6);
  const struct { const char *k; uint64_t v; } f[] = {
    { "block", p.block }, { "at", p.at }, { "exits", p.exits }, { "records", p.records }, { "bytes", p.bytes },
  };
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
    lua_pushinteger(L, (lua_Integer)f[i].v);
    lua_setfield(L, -2, f[i].k);
  }
  lua_createtable(L, 64, 0);
  for (int i = 0; i < 64; i++) {
    lua_pushinteger(L, (lua_Integer)p.icount[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "icount");
  return 1;
}

static uint64_t pos_field(lua_State *L, const char *k) {
  if (lua_getfield(L, 2, k) != LUA_TNUMBER || !lua_isinteger(L, -1))
    luaL_error(L, "record:seek: position field %s must be an integer, got %s", k, luaL_typename(L, -1));
  uint64_t v = (uint64_t)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

static int record_seek(lua_State *L) {
  LRecord *lr = check_record(L, 1, "record:seek");
  lmv_checktable(L, 2, "record:seek", "position");
  mv_rec_pos p;
  memset(&p, 0, sizeof p);
  p.block = pos_field(L, "block"), p.at = pos_field(L, "at"), p.exits = pos_field(L, "exits");
  p.records = pos_field(L, "records"), p.bytes = pos_field(L, "bytes");
  if (lua_getfield(L, 2, "icount") != LUA_TTABLE)
    return luaL_error(L, "record:seek: position field icount must be a table");
  for (int i = 0; i < 64; i++) {
    lua_rawgeti(L, -1, i + 1);
    p.icount[i] = (uint64_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  mv_err err;
  if (mv_rec_seek(lr->r, &p, &err) < 0) return lmv_raise(L, &err);
  return 0;
}

static int record_pause(lua_State *L) {
  mv_rec_pause(check_record(L, 1, "record:pause")->r, lua_toboolean(L, 2));
  return 0;
}

static int record_stop_at(lua_State *L) {
  LRecord *lr = check_record(L, 1, "record:stop_at");
  lua_Integer n = lmv_checkint(L, 2, "record:stop_at", "exit index");
  if (n < 0) return luaL_error(L, "record:stop_at: exit index %I is negative", n);
  mv_rec_stop_at(lr->r, (uint64_t)n);
  return 0;
}

static int record_at_end(lua_State *L) {
  lua_pushboolean(L, mv_rec_at_end(check_record(L, 1, "record:at_end")->r));
  return 1;
}

static int record_gc(lua_State *L) {
  LRecord *lr = luaL_checkudata(L, 1, MV_RECORD);
  if (lr->r) {
    mv_rec_free(lr->r);
    lr->r = NULL;
  }
  return 0;
}

static int record_tostring(lua_State *L) {
  LRecord *lr = luaL_checkudata(L, 1, MV_RECORD);
  if (!lr->r) {
    lua_pushliteral(L, "Record(freed)");
    return 1;
  }
  mv_rec_summary s;
  mv_rec_summary_get(lr->r, &s);
  lua_pushfstring(L, "Record(%s %s, %I exits%s)", s.replay ? "replaying" : "recording to", mv_rec_path(lr->r),
                  (lua_Integer)s.exits, s.finished ? ", finished" : "");
  return 1;
}

static const luaL_Reg record_methods[] = {
  { "close", record_close }, { "summary", record_summary }, { "divergence", record_divergence },
  { "tell", record_tell }, { "seek", record_seek }, { "pause", record_pause }, { "stop_at", record_stop_at },
  { "at_end", record_at_end }, { NULL, NULL },
};

static const luaL_Reg record_meta[] = {
  { "__gc", record_gc }, { "__close", record_gc }, { "__tostring", record_tostring }, { NULL, NULL },
};

static const luaL_Reg guest_methods[] = {
  { "record", guest_record }, { "replay", guest_replay }, { "state_hash", guest_state_hash }, { NULL, NULL },
};

int lmv_open_record(lua_State *L) {
  lua_pushcfunction(L, log_records);
  lua_setfield(L, -2, "log_records");
  luaL_newmetatable(L, MV_RECORD);
  luaL_setfuncs(L, record_meta, 0);
  luaL_newlib(L, record_methods);
  lua_setfield(L, -2, "__index");
  lua_getfield(L, -1, "__index");
  lua_setfield(L, -3, "Record");   /* module.Record: the method table */
  lua_pop(L, 1);
  lmv_add_methods(L, "Guest", guest_methods);
  return 0;
}
