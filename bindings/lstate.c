/*
 * lstate.c - the moonvisor executable's Lua state: its allocator, panic and
 * warning functions (what luaL_newstate sets up, with another allocator).
 *
 * The allocator serves blocks of up to POOL_MAX bytes from size classes of
 * POOL_STEP bytes carved out of POOL_CHUNK-byte chunks, with a free list per
 * class; bigger blocks go to malloc.  Lua tells the allocator the size of
 * every block it frees or resizes, so blocks carry no header.  Start-up is
 * almost nothing but small allocations into a growing heap, where glibc
 * takes its slow path (~100 instructions a block, bench/counts.sh); a
 * class's free list or the chunk's bump pointer takes ~10.  Chunks are
 * returned to malloc when the state closes (mv_state_close); until then a
 * freed block waits on its class's list for the next block of its size.
 * A Lua state is used by one thread at a time (guest:run's handlers hold
 * the state's lock: bindings/lrun.c), so the pools need no lock of their own.
 * Under AddressSanitizer free blocks and the unused rest of a chunk are
 * poisoned, so a use after free inside Lua still reports.
 *
 * The collector starts a cycle when the heap has tripled since the last one
 * (pause 300; Lua's default, 200, doubles): a moonvisor process's Lua heap
 * is small next to its guest's memory, and a start, whose heap only grows,
 * then marks it about 1.5 times instead of twice (bench/counts.sh: -0.13M
 * instructions of a Multiboot start).  A script can set its own with
 * collectgarbage("incremental", pause).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include "lstate.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define POOL_STEP 16
#define POOL_MAX 512
#define POOL_CLASSES (POOL_MAX / POOL_STEP)
#define POOL_CHUNK (128 * 1024)
#define MV_GC_PAUSE 300   /* percent: see the top of this file */

typedef struct Chunk {
  struct Chunk *next;
  max_align_t pad[];   /* blocks start after the header, aligned */
} Chunk;

typedef struct Pools {
  void *free[POOL_CLASSES + 1];   /* class c holds blocks of c * POOL_STEP bytes, linked through their first word */
  char *bump, *end;               /* the unused rest of the newest chunk */
  Chunk *chunks;
} Pools;

/* The executable's state's pools.  os.exit(code, true) closes the state
 * without mv_state_close: the chunks then stay reachable from here until
 * the process ends (leak checkers see memory in use, not lost). */
static Pools *exe_pools;

static size_t class_of(size_t n) { return (n + POOL_STEP - 1) / POOL_STEP; }

static void *pool_get(Pools *p, size_t n) {
  size_t c = class_of(n);
  void **b = p->free[c];
  if (b) {
    UNPOISON(b, c * POOL_STEP);
    p->free[c] = *b;
    return b;
  }
  size_t size = c * POOL_STEP;
  if ((size_t)(p->end - p->bump) < size) {   /* the rest of the chunk is lost: at most POOL_MAX bytes */
    Chunk *k = malloc(POOL_CHUNK);
    if (!k) return NULL;
    k->next = p->chunks;
    p->chunks = k;
    p->bump = (char *)k->pad;
    p->end = (char *)k + POOL_CHUNK;
    POISON(p->bump, (size_t)(p->end - p->bump));
  }
  char *r = p->bump;
  p->bump += size;
  UNPOISON(r, size);
  return r;
}

static void pool_put(Pools *p, void *b, size_t n) {
  size_t c = class_of(n);
  *(void **)b = p->free[c];
  p->free[c] = b;
  POISON(b, c * POOL_STEP);
}

/* lua_Alloc: when ptr is NULL, osize says what kind of object Lua makes,
 * not a size. */
static void *pool_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  Pools *p = ud;
  if (!ptr) osize = 0;
  if (nsize == 0) {
    if (ptr) {
      if (osize <= POOL_MAX) pool_put(p, ptr, osize);
      else free(ptr);
    }
    return NULL;
  }
  if (osize > POOL_MAX && nsize > POOL_MAX) return realloc(ptr, nsize);
  if (ptr && osize <= POOL_MAX && nsize <= POOL_MAX && class_of(osize) == class_of(nsize)) return ptr;
  void *n = nsize <= POOL_MAX ? pool_get(p, nsize) : malloc(nsize);
  if (!n) return NULL;
  if (ptr) {
    memcpy(n, ptr, osize < nsize ? osize : nsize);
    if (osize <= POOL_MAX) pool_put(p, ptr, osize);
    else free(ptr);
  }
  return n;
}

static int panic(lua_State *L) {   /* an error outside any protected call: say it, then Lua aborts */
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "moonvisor: PANIC: unprotected error in call to Lua API (%s)\n", msg ? msg : "error object is not a string");
  fflush(stderr);
  return 0;
}

/* warn(): off until "@on", back off with "@off"; a message may come in pieces. */
static void warn_off(void *ud, const char *msg, int tocont);
static void warn_cont(void *ud, const char *msg, int tocont);

static int warn_control(lua_State *L, const char *msg, int tocont) {
  if (tocont || msg[0] != '@') return 0;
  if (strcmp(msg, "@off") == 0) lua_setwarnf(L, warn_off, L);
  else if (strcmp(msg, "@on") == 0) lua_setwarnf(L, warn_cont, L);
  return 1;
}

static void warn_off(void *ud, const char *msg, int tocont) { warn_control(ud, msg, tocont); }

static void warn_more(void *ud, const char *msg, int tocont) {
  fputs(msg, stderr);
  if (tocont) return;
  fputs("\n", stderr);
  lua_setwarnf(ud, warn_cont, ud);
}

static void warn_cont(void *ud, const char *msg, int tocont) {
  if (warn_control(ud, msg, tocont)) return;
  fputs("Lua warning: ", stderr);
  warn_more(ud, msg, tocont);
  if (tocont) lua_setwarnf(ud, warn_more, ud);
}

lua_State *mv_state_new(void) {
  Pools *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  lua_State *L = lua_newstate(pool_alloc, p);
  if (!L) {
    free(p);
    return NULL;
  }
  lua_gc(L, LUA_GCINC, MV_GC_PAUSE, 0, 0);   /* 0: Lua's step multiplier and size */
  lua_atpanic(L, panic);
  lua_setwarnf(L, warn_off, L);
  exe_pools = p;
  return L;
}

void mv_state_close(lua_State *L) {
  void *ud;
  lua_Alloc f = lua_getallocf(L, &ud);
  lua_close(L);
  if (f != pool_alloc) return;
  Pools *p = ud;
  for (Chunk *k = p->chunks, *next; k; k = next) {
    next = k->next;
    UNPOISON(k, POOL_CHUNK);
    free(k);
  }
  if (exe_pools == p) exe_pools = NULL;
  free(p);
}
