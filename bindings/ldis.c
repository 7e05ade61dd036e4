/*
 * ldis.c - core.disasm(bytes, addr, bits[, count]): x86 disassembly through
 * capstone, for the REPL's dis() and trace().  The three capstone handles
 * (16, 32, 64 bits) are opened once and live in a userdata upvalue that
 * closes them when the module is collected.  libcapstone is loaded with
 * dlopen on the first disassembly, so a moonvisor start does not pay for its
 * relocations.
 */
#include <dlfcn.h>
#include <string.h>
#include <capstone/capstone.h>
#include "lmoonvisor.h"

static struct {
  cs_err (*open)(cs_arch, cs_mode, csh *);
  cs_err (*close)(csh *);
  size_t (*disasm)(csh, const uint8_t *, size_t, uint64_t, size_t, cs_insn **);
  void (*free)(cs_insn *, size_t);
  const char *(*strerror)(cs_err);
} cs;   /* filled once by load_capstone, then only read */

static void load_capstone(lua_State *L) {
  if (cs.open) return;
  void *lib = dlopen("libcapstone.so.4", RTLD_NOW | RTLD_LOCAL);
  if (!lib) lib = dlopen("libcapstone.so", RTLD_NOW | RTLD_LOCAL);
  if (!lib) luaL_error(L, "disasm: needs libcapstone (Debian: apt-get install libcapstone4): %s", dlerror());
  void *f[5] = { dlsym(lib, "cs_open"), dlsym(lib, "cs_close"), dlsym(lib, "cs_disasm"), dlsym(lib, "cs_free"),
                 dlsym(lib, "cs_strerror") };
  for (int i = 0; i < 5; i++)
    if (!f[i]) luaL_error(L, "disasm: libcapstone lacks a function moonvisor uses");
  memcpy(&cs.close, &f[1], sizeof f[1]);
  memcpy(&cs.disasm, &f[2], sizeof f[2]);
  memcpy(&cs.free, &f[3], sizeof f[3]);
  memcpy(&cs.strerror, &f[4], sizeof f[4]);
  memcpy(&cs.open, &f[0], sizeof f[0]);   /* last: it marks the table complete */
}

#define MV_DISASM "moonvisor.Disasm"

typedef struct LDisasm {
  csh h[3];       /* 16, 32 and 64-bit handles; 0 when not open */
} LDisasm;

static int mode_index(int bits) { return bits == 16 ? 0 : bits == 32 ? 1 : bits == 64 ? 2 : -1; }

static int disasm_gc(lua_State *L) {
  LDisasm *d = luaL_checkudata(L, 1, MV_DISASM);
  for (int i = 0; i < 3; i++)
    if (d->h[i]) cs.close(&d->h[i]);
  return 0;
}

static csh handle(lua_State *L, int bits) {
  LDisasm *d = lua_touserdata(L, lua_upvalueindex(1));
  int i = mode_index(bits);
  if (!d->h[i]) {
    static const cs_mode modes[3] = { CS_MODE_16, CS_MODE_32, CS_MODE_64 };
    load_capstone(L);
    cs_err e = cs.open(CS_ARCH_X86, modes[i], &d->h[i]);
    if (e != CS_ERR_OK) {
      d->h[i] = 0;
      luaL_error(L, "disasm: capstone: %s", cs.strerror(e));
    }
  }
  return d->h[i];
}

/* disasm(bytes, addr, bits[, count]) -> { {address, size, mnemonic, op_str,
 * bytes}, ... }: up to count instructions (all by default); stops at the
 * first byte sequence that is no instruction. */
static int mod_disasm(lua_State *L) {
  size_t len;
  const char *code = lmv_checklstring(L, 1, &len, "disasm", "bytes");
  lua_Integer addr = lmv_checkint(L, 2, "disasm", "addr");
  lua_Integer bits = lmv_checkint(L, 3, "disasm", "bits");
  lua_Integer count = lua_isnoneornil(L, 4) ? 0 : lmv_checkint(L, 4, "disasm", "count");
  if (mode_index((int)bits) < 0 || bits != (int)bits)
    return luaL_error(L, "disasm: bits must be 16, 32 or 64, got %I", (LUAI_UACINT)bits);
  if (count < 0) return luaL_error(L, "disasm: count must not be negative, got %I", (LUAI_UACINT)count);
  csh h = handle(L, (int)bits);
  cs_insn *insn;
  size_t n = cs.disasm(h, (const uint8_t *)code, len, (uint64_t)addr, (size_t)count, &insn);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, (lua_Integer)insn[i].address);
    lua_setfield(L, -2, "address");
    lua_pushinteger(L, insn[i].size);
    lua_setfield(L, -2, "size");
    lua_pushstring(L, insn[i].mnemonic);
    lua_setfield(L, -2, "mnemonic");
    lua_pushstring(L, insn[i].op_str);
    lua_setfield(L, -2, "op_str");
    lua_pushlstring(L, (const char *)insn[i].bytes, insn[i].size);
    lua_setfield(L, -2, "bytes");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  if (n) cs.free(insn, n);
  return 1;
}

int lmv_open_disasm(lua_State *L) {   /* stack: module table */
  LDisasm *d = lua_newuserdatauv(L, sizeof *d, 0);
  memset(d, 0, sizeof *d);
  if (luaL_newmetatable(L, MV_DISASM)) {
    lua_pushcfunction(L, disasm_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  lua_pushcclosure(L, mod_disasm, 1);
  lua_setfield(L, -2, "disasm");
  return 0;
}
