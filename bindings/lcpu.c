/*
 * lcpu.c - CPU state beyond the general registers: cpu:fpu() /
 * cpu:write_fpu(t), cpu:cpuid_set(leaf, subleaf, regs), and g:irq(line,
 * level) for the in-kernel interrupt controller.
 */
#include <string.h>
#include "lmoonvisor.h"

/* cpu:fpu() -> { fcw, fsw, ftw, mxcsr, st = { 8 x 10-byte strings }, xmm = { 16 x 16-byte strings } } */
static int vcpu_fpu(lua_State *L) {
  LVcpu *v = lmv_checkvcpu(L, 1, "vcpu:fpu");
  mv_fpu f;
  mv_err err;
  if (mv_vcpu_read_fpu(v->cpu, &f, &err) < 0) return lmv_raise(L, &err);
  lua_createtable(L, 0, 6);
  const struct { const char *k; lua_Integer v; } ints[] = { { "fcw", f.fcw }, { "fsw", f.fsw }, { "ftw", f.ftw }, { "mxcsr", f.mxcsr } };
  for (int i = 0; i < 4; i++) {
    lua_pushinteger(L, ints[i].v);
    lua_setfield(L, -2, ints[i].k);
  }
  lua_createtable(L, 8, 0);
  for (int i = 0; i < 8; i++) {
    lua_pushlstring(L, (const char *)f.st[i], 10);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "st");
  lua_createtable(L, 16, 0);
  for (int i = 0; i < 16; i++) {
    lua_pushlstring(L, (const char *)f.xmm[i], 16);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "xmm");
  return 1;
}

/* Copies strings of exactly `size` bytes from t[name][1..n] into dst. */
static void merge_bytes(lua_State *L, const char *name, int n, size_t size, uint8_t *dst) {
  int ty = lua_getfield(L, 2, name);
  if (ty == LUA_TTABLE) {
    for (int i = 0; i < n; i++) {
      if (lua_rawgeti(L, -1, i + 1) != LUA_TNIL) {
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        if (lua_type(L, -1) != LUA_TSTRING || len != size)
          luaL_error(L, "vcpu:write_fpu: %s[%d] must be a string of %d bytes", name, i + 1, (int)size);
        memcpy(dst + (size_t)i * size, s, size);
      }
      lua_pop(L, 1);
    }
  } else if (ty != LUA_TNIL) {
    luaL_error(L, "vcpu:write_fpu: %s must be a table, got %s", name, lmv_typename(L, -1));
  }
  lua_pop(L, 1);
}

static int vcpu_write_fpu(lua_State *L) {
  LVcpu *v = lmv_checkvcpu(L, 1, "vcpu:write_fpu");
  lmv_checktable(L, 2, "vcpu:write_fpu", "fpu");
  mv_fpu f;
  mv_err err;
  if (mv_vcpu_read_fpu(v->cpu, &f, &err) < 0) return lmv_raise(L, &err);
  const struct { const char *k; lua_Integer max; } ints[] = { { "fcw", 0xffff }, { "fsw", 0xffff }, { "ftw", 0xff }, { "mxcsr", 0xffffffff } };
  lua_Integer vals[4] = { f.fcw, f.fsw, f.ftw, f.mxcsr };
  for (int i = 0; i < 4; i++) {
    if (lua_getfield(L, 2, ints[i].k) != LUA_TNIL) {
      vals[i] = lmv_checkint(L, -1, "vcpu:write_fpu", ints[i].k);
      if (vals[i] < 0 || vals[i] > ints[i].max)
        return luaL_error(L, "vcpu:write_fpu: %s = %I is out of range", ints[i].k, (LUAI_UACINT)vals[i]);
    }
    lua_pop(L, 1);
  }
  f.fcw = (uint16_t)vals[0]; f.fsw = (uint16_t)vals[1]; f.ftw = (uint8_t)vals[2]; f.mxcsr = (uint32_t)vals[3];
  merge_bytes(L, "st", 8, 10, &f.st[0][0]);
  merge_bytes(L, "xmm", 16, 16, &f.xmm[0][0]);
  if (mv_vcpu_write_fpu(v->cpu, &f, &err) < 0) return lmv_raise(L, &err);
  return 0;
}

/* cpu:cpuid_set(leaf, subleaf, { eax =, ebx =, ecx =, edx = }); subleaf may be nil. */
static int vcpu_cpuid_set(lua_State *L) {
  LVcpu *v = lmv_checkvcpu(L, 1, "vcpu:cpuid_set");
  lua_Integer leaf = lmv_checkint(L, 2, "vcpu:cpuid_set", "leaf");
  lua_Integer subleaf = lua_isnoneornil(L, 3) ? 0 : lmv_checkint(L, 3, "vcpu:cpuid_set", "subleaf");
  lmv_checktable(L, 4, "vcpu:cpuid_set", "regs");
  if (leaf < 0 || leaf > 0xffffffff || subleaf < 0 || subleaf > 0xffffffff)
    return luaL_error(L, "vcpu:cpuid_set: leaf and subleaf must be 32-bit values");
  static const char *const names[4] = { "eax", "ebx", "ecx", "edx" };
  uint32_t regs[4] = { 0, 0, 0, 0 };
  for (int i = 0; i < 4; i++) {
    if (lua_getfield(L, 4, names[i]) != LUA_TNIL) {
      lua_Integer r = lmv_checkint(L, -1, "vcpu:cpuid_set", names[i]);
      if (r < 0 || r > 0xffffffff) return luaL_error(L, "vcpu:cpuid_set: %s must be a 32-bit value", names[i]);
      regs[i] = (uint32_t)r;
    }
    lua_pop(L, 1);
  }
  mv_err err;
  if (mv_vcpu_set_cpuid(v->cpu, (uint32_t)leaf, (uint32_t)subleaf, regs, &err) < 0) return lmv_raise(L, &err);
  return 0;
}

/* g:irq(line, level): level true/1 raises the line, false/0 lowers it. */
static int guest_irq(lua_State *L) {
  mv_guest *g = lmv_checkguest(L, 1, "guest:irq");
  lua_Integer line = lmv_checkint(L, 2, "guest:irq", "line");
  int level = lua_isboolean(L, 3) ? lua_toboolean(L, 3) : (int)lmv_checkint(L, 3, "guest:irq", "level");
  if (line < 0 || line > 1023) return luaL_error(L, "guest:irq: line %I is out of range", (LUAI_UACINT)line);
  mv_err err;
  if (mv_guest_irq(g, (uint32_t)line, level, &err) < 0) return lmv_raise(L, &err);
  return 0;
}

static const luaL_Reg vcpu_methods[] = {
  { "fpu", vcpu_fpu }, { "write_fpu", vcpu_write_fpu }, { "cpuid_set", vcpu_cpuid_set }, { NULL, NULL },
};

static const luaL_Reg guest_methods[] = { { "irq", guest_irq }, { NULL, NULL } };

/* stack: module table */
int lmv_open_cpu(lua_State *L) {
  lmv_add_methods(L, "Vcpu", vcpu_methods);
  lmv_add_methods(L, "Guest", guest_methods);
  return 0;
}
