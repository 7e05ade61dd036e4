/*
 * lafl.c - the C side of AFL++'s forkserver protocol (scripts/moonvisor/afl.lua
 * holds the logic): shared memory, 4-byte messages on the forkserver's pipes
 * and a stand-in child process.
 *   core.afl.attach(id[, what])    -> Shm: AFL++'s segment, a System V id
 *                                     ("123", 123) or a POSIX name ("/afl_...")
 *   core.afl.create(size)          -> Shm, id: a private segment, freed when the
 *                                     last process detaches (tests, simulators)
 *   shm:size()  shm:hit(index)     -> the segment's bytes; counter byte index + 1
 *                                     (255 wraps to 1: a hit is never lost)
 *   shm:input([max])               -> the test case in AFL++'s layout: a u32
 *                                     length, then the bytes
 *   shm:read(off, len)  shm:write(off, str)  shm:close()
 *   core.afl.recv(fd[, timeout_ms]) -> u32, or nil, "timeout" | "closed"
 *   core.afl.send(fd, u32)         -> true, or nil, "closed" (SIGPIPE is ignored)
 *   core.afl.isfd(fd)  core.afl.close(fd)  core.afl.getpid()  core.afl.getppid()
 *   core.afl.raise(sig)            -> ends the process with sig (default action),
 *                                     as a crashing target does
 *   core.afl.helper()              -> Helper: a child that only waits, the "pid"
 *                                     AFL++ kills on a timeout (nothing forks per run)
 *   helper:pid()  helper:close()   -> kill and reap
 *   helper:wait([timeout_ms[, watch_fd]]) -> "killed", signal | "hangup" (watch_fd's
 *                                     writer went) | "timeout"
 * The names of AFL++'s variables are compiled in (core.afl.SHM_ENV ...): afl-fuzz
 * looks for "__AFL_SHM_ID" in the target binary to decide that it is instrumented.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include "lmoonvisor.h"

#define MV_SHM "moonvisor.AflShm"
#define MV_HELPER "moonvisor.AflHelper"

#define AFL_SHM_ENV "__AFL_SHM_ID"
#define AFL_SHM_FUZZ_ENV "__AFL_SHM_FUZZ_ID"
#define AFL_FORKSRV_FD 198

/* {====================================================== shared memory */

typedef struct LShm {
  unsigned char *mem;   /* NULL once closed */
  size_t size;
  int sysv;             /* shmdt, else munmap */
} LShm;

static LShm *check_shm(lua_State *L, int idx, const char *what) {
  LShm *s = luaL_testudata(L, idx, MV_SHM);
  if (!s) luaL_error(L, "%s: expected a %s, got %s", what, MV_SHM, lmv_typename(L, idx));
  else if (!s->mem) luaL_error(L, "%s: attempt to use a detached segment", what);
  return s;
}

static LShm *new_shm(lua_State *L) {
  LShm *s = lua_newuserdatauv(L, sizeof *s, 0);
  s->mem = NULL;
  s->size = 0;
  s->sysv = 1;
  luaL_setmetatable(L, MV_SHM);
  return s;
}

static int attach_sysv(lua_State *L, LShm *s, int id, const char *what) {
  struct shmid_ds ds;
  if (shmctl(id, IPC_STAT, &ds) < 0) return luaL_error(L, "%s: segment %d: %s", what, id, strerror(errno));
  void *p = shmat(id, NULL, 0);
  if (p == (void *)-1) return luaL_error(L, "%s: shmat(%d): %s", what, id, strerror(errno));
  s->mem = p;
  s->size = ds.shm_segsz;
  return 1;
}

static int afl_attach(lua_State *L) {
  const char *what = lua_isstring(L, 2) ? lua_tostring(L, 2) : "afl.attach";
  LShm *s;
  if (lua_type(L, 1) == LUA_TSTRING && lua_tostring(L, 1)[0] == '/') {   /* AFL++ built with USEMMAP */
    const char *name = lua_tostring(L, 1);
    s = new_shm(L);
    int fd = shm_open(name, O_RDWR, 0);
    if (fd < 0) return luaL_error(L, "%s: shm_open(%s): %s", what, name, strerror(errno));
    struct stat st;
    void *p = MAP_FAILED;
    if (fstat(fd, &st) == 0 && st.st_size > 0)
      p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return luaL_error(L, "%s: mmap(%s): %s", what, name, strerror(e));
    s->mem = p;
    s->size = (size_t)st.st_size;
    s->sysv = 0;
    return 1;
  }
  lua_Integer id;
  if (lua_type(L, 1) == LUA_TSTRING) {
    int ok;
    id = lua_tointegerx(L, 1, &ok);
    if (!ok) return luaL_error(L, "%s: segment id %s is not a number", what, lua_tostring(L, 1));
  } else {
    id = lmv_checkint(L, 1, what, "id");
  }
  if (id < 0 || id > INT32_MAX) return luaL_error(L, "%s: segment id %I is not in 0..2^31-1", what, (LUAI_UACINT)id);
  s = new_shm(L);
  return attach_sysv(L, s, (int)id, what);
}

static int afl_create(lua_State *L) {
  const char *what = "afl.create";
  lua_Integer size = lmv_checkint(L, 1, what, "size");
  if (size < 1 || size > (1 << 30)) return luaL_error(L, "%s: size %I is not in 1..2^30", what, (LUAI_UACINT)size);
  LShm *s = new_shm(L);
  int id = shmget(IPC_PRIVATE, (size_t)size, IPC_CREAT | IPC_EXCL | 0600);
  if (id < 0) return luaL_error(L, "%s: shmget(%I bytes): %s", what, (LUAI_UACINT)size, strerror(errno));
  attach_sysv(L, s, id, what);
  shmctl(id, IPC_RMID, NULL);   /* gone once the last process detaches; Linux still lets others attach */
  lua_pushinteger(L, id);
  return 2;
}

static int shm_size(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check_shm(L, 1, "shm:size")->size);
  return 1;
}

/* The hot path (one call per coverage hit): no more checks than needed. */
static int shm_hit(lua_State *L) {
  LShm *s = check_shm(L, 1, "shm:hit");
  lua_Integer i = luaL_checkinteger(L, 2);
  if (i < 0 || (lua_Unsigned)i >= s->size)
    return luaL_error(L, "shm:hit: index %I is outside the %I-byte map", (LUAI_UACINT)i, (LUAI_UACINT)s->size);
  unsigned char v = (unsigned char)(s->mem[i] + 1);
  s->mem[i] = v ? v : 1;
  return 0;
}

static int shm_input(lua_State *L) {
  LShm *s = check_shm(L, 1, "shm:input");
  lua_Integer max = luaL_optinteger(L, 2, INT32_MAX);
  if (s->size < 4) return luaL_error(L, "shm:input: a %I-byte segment holds no test case", (LUAI_UACINT)s->size);
  uint32_t len;
  memcpy(&len, s->mem, 4);
  size_t n = len;
  if (n > s->size - 4) n = s->size - 4;
  if (max >= 0 && n > (size_t)max) n = (size_t)max;
  lua_pushlstring(L, (const char *)s->mem + 4, n);
  lua_pushinteger(L, (lua_Integer)len);   /* the length AFL++ wrote, before clamping */
  return 2;
}

static void check_range(lua_State *L, LShm *s, lua_Integer off, lua_Integer len, const char *what) {
  if (off < 0 || len < 0 || (lua_Unsigned)off > s->size || (lua_Unsigned)len > s->size - (size_t)off)
    luaL_error(L, "%s: range %I+%I is outside the %I-byte segment", what, (LUAI_UACINT)off, (LUAI_UACINT)len,
               (LUAI_UACINT)s->size);
}

static int shm_read(lua_State *L) {
  const char *what = "shm:read";
  LShm *s = check_shm(L, 1, what);
  lua_Integer off = lmv_checkint(L, 2, what, "offset"), len = lmv_checkint(L, 3, what, "length");
  check_range(L, s, off, len, what);
  lua_pushlstring(L, (const char *)s->mem + off, (size_t)len);
  return 1;
}

static int shm_write(lua_State *L) {
  const char *what = "shm:write";
  LShm *s = check_shm(L, 1, what);
  lua_Integer off = lmv_checkint(L, 2, what, "offset");
  size_t len;
  const char *data = lmv_checklstring(L, 3, &len, what, "data");
  check_range(L, s, off, (lua_Integer)len, what);
  memcpy(s->mem + off, data, len);
  return 0;
}

static int shm_close(lua_State *L) {
  LShm *s = luaL_testudata(L, 1, MV_SHM);
  if (!s) return luaL_error(L, "shm:close: expected a %s, got %s", MV_SHM, lmv_typename(L, 1));
  if (s->mem) {
    if (s->sysv) shmdt(s->mem);
    else munmap(s->mem, s->size);
    s->mem = NULL;
  }
  return 0;
}

static int shm_tostring(lua_State *L) {
  LShm *s = luaL_checkudata(L, 1, MV_SHM);
  if (!s->mem) lua_pushliteral(L, "AflShm(detached)");
  else lua_pushfstring(L, "AflShm(%I bytes)", (LUAI_UACINT)s->size);
  return 1;
}

/* {====================================================== the pipes */

static int check_fd(lua_State *L, int idx, const char *what) {
  lua_Integer fd = lmv_checkint(L, idx, what, "fd");
  if (fd < 0 || fd > INT32_MAX) luaL_error(L, "%s: fd %I is not a descriptor number", what, (LUAI_UACINT)fd);
  return (int)fd;
}

static int afl_recv(lua_State *L) {
  const char *what = "afl.recv";
  int fd = check_fd(L, 1, what);
  lua_Integer ms = luaL_optinteger(L, 2, -1);
  if (ms < -1 || ms > INT32_MAX) return luaL_error(L, "%s: timeout_ms %I is not in -1..2^31-1", what, (LUAI_UACINT)ms);
  unsigned char buf[4];
  size_t got = 0;
  while (got < 4) {
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int r = poll(&p, 1, got ? -1 : (int)ms);   /* a message once begun is read to its end */
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return luaL_error(L, "%s: poll(fd %d): %s", what, fd, strerror(errno));
    if (r == 0) {
      lua_pushnil(L);
      lua_pushliteral(L, "timeout");
      return 2;
    }
    if (p.revents & POLLNVAL) return luaL_error(L, "%s: fd %d is not open", what, fd);
    ssize_t n = read(fd, buf + got, 4 - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return luaL_error(L, "%s: read(fd %d): %s", what, fd, strerror(errno));
    if (n == 0) {
      lua_pushnil(L);
      lua_pushliteral(L, "closed");
      return 2;
    }
    got += (size_t)n;
  }
  uint32_t v;
  memcpy(&v, buf, 4);
  lua_pushinteger(L, (lua_Integer)v);
  return 1;
}

static int afl_send(lua_State *L) {
  const char *what = "afl.send";
  int fd = check_fd(L, 1, what);
  lua_Integer v = lmv_checkint(L, 2, what, "value");
  if (v < INT32_MIN || v > (lua_Integer)UINT32_MAX)
    return luaL_error(L, "%s: value %I does not fit 32 bits", what, (LUAI_UACINT)v);
  signal(SIGPIPE, SIG_IGN);   /* a fuzzer that went away is an EPIPE here, not a dead process */
  uint32_t u = (uint32_t)v;
  const unsigned char *p = (const unsigned char *)&u;
  size_t off = 0;
  while (off < 4) {
    ssize_t n = write(fd, p + off, 4 - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EPIPE) {
      lua_pushnil(L);
      lua_pushliteral(L, "closed");
      return 2;
    }
    if (n < 0) return luaL_error(L, "%s: write(fd %d): %s", what, fd, strerror(errno));
    off += (size_t)n;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int afl_isfd(lua_State *L) {
  int fd = check_fd(L, 1, "afl.isfd");
  lua_pushboolean(L, fcntl(fd, F_GETFD) >= 0);
  return 1;
}

static int afl_getpid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

static int afl_getppid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getppid());
  return 1;
}

/* Ends the process with signal sig, as a crashing target does (default
 * action, unblocked); returns only if the signal does not end it. */
static int afl_raise(lua_State *L) {
  lua_Integer sig = lmv_checkint(L, 1, "afl.raise", "signal");
  if (sig < 1 || sig >= NSIG) return luaL_error(L, "afl.raise: signal %I is not in 1..%d", (LUAI_UACINT)sig, NSIG - 1);
  signal((int)sig, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, (int)sig);
  sigprocmask(SIG_UNBLOCK, &set, NULL);
  raise((int)sig);
  return 0;
}

static int afl_close(lua_State *L) {
  int fd = check_fd(L, 1, "afl.close");
  lua_pushboolean(L, close(fd) == 0);
  return 1;
}

/* {====================================================== the stand-in child */

typedef struct LHelper {
  pid_t pid;     /* 0 once reaped */
  int dead_fd;   /* read end: EOF when the helper dies */
  int life_fd;   /* write end of its stdin: the helper leaves when we do */
  int status;    /* its wait status, once reaped */
} LHelper;

static LHelper *check_helper(lua_State *L, int idx, const char *what) {
  LHelper *h = luaL_testudata(L, idx, MV_HELPER);
  if (!h) luaL_error(L, "%s: expected a %s, got %s", what, MV_HELPER, lmv_typename(L, idx));
  return h;
}

static void helper_reap(LHelper *h, int block) {
  if (h->pid > 0) {
    int st;
    pid_t r;
    while ((r = waitpid(h->pid, &st, block ? 0 : WNOHANG)) < 0 && errno == EINTR) {}
    if (r == h->pid || (r < 0 && errno == ECHILD)) {
      h->status = r == h->pid ? st : 0;
      h->pid = 0;
    }
  }
}

static void helper_release(LHelper *h) {
  if (h->life_fd >= 0) close(h->life_fd);
  if (h->dead_fd >= 0) close(h->dead_fd);
  h->life_fd = h->dead_fd = -1;
  if (h->pid > 0) {
    kill(h->pid, SIGKILL);
    helper_reap(h, 1);
  }
}

static int afl_helper(lua_State *L) {
  const char *what = "afl.helper";
  LHelper *h = lua_newuserdatauv(L, sizeof *h, 0);
  h->pid = 0;
  h->dead_fd = h->life_fd = -1;
  h->status = 0;
  luaL_setmetatable(L, MV_HELPER);
  int dead[2], life[2];
  if (pipe2(dead, O_CLOEXEC) < 0) return luaL_error(L, "%s: pipe: %s", what, strerror(errno));
  if (pipe2(life, O_CLOEXEC) < 0) {
    int e = errno;
    close(dead[0]);
    close(dead[1]);
    return luaL_error(L, "%s: pipe: %s", what, strerror(e));
  }
  pid_t pid = fork();
  if (pid == 0) {
    /* Only async-signal-safe calls from here.  It keeps the read end of the
     * life pipe and the write end of the death pipe, nothing else of the
     * parent's (no guest, no fuzzer pipes), and default signal actions. */
    for (int fd = 0; fd < 1024; fd++)
      if (fd != life[0] && fd != dead[1]) close(fd);
    close_range(1024, ~0U, 0);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) sigaction(sig, &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    char c;
    for (;;) {   /* until the parent goes (EOF) or a signal ends it */
      ssize_t n = read(life[0], &c, 1);
      if (n == 0 || (n < 0 && errno != EINTR)) _exit(0);
    }
  }
  int e = errno;
  close(dead[1]);
  close(life[0]);
  if (pid < 0) {
    close(dead[0]);
    close(life[1]);
    return luaL_error(L, "%s: fork: %s", what, strerror(e));
  }
  h->pid = pid;
  h->dead_fd = dead[0];
  h->life_fd = life[1];
  return 1;
}

static int helper_pid(lua_State *L) {
  LHelper *h = check_helper(L, 1, "helper:pid");
  if (h->pid > 0) lua_pushinteger(L, h->pid);
  else lua_pushnil(L);
  return 1;
}

static int helper_wait(lua_State *L) {
  const char *what = "helper:wait";
  LHelper *h = check_helper(L, 1, what);
  lua_Integer ms = luaL_optinteger(L, 2, 0);
  if (ms < -1 || ms > INT32_MAX) return luaL_error(L, "%s: timeout_ms %I is not in -1..2^31-1", what, (LUAI_UACINT)ms);
  int watch = lua_isnoneornil(L, 3) ? -1 : check_fd(L, 3, what);
  if (h->dead_fd < 0) {
    lua_pushliteral(L, "killed");
    lua_pushinteger(L, WIFSIGNALED(h->status) ? WTERMSIG(h->status) : 0);
    return 2;
  }
  struct pollfd p[2] = { { .fd = h->dead_fd, .events = POLLIN }, { .fd = watch, .events = 0 } };
  int r;
  while ((r = poll(p, watch >= 0 ? 2 : 1, (int)ms)) < 0 && errno == EINTR) {}
  if (r < 0) return luaL_error(L, "%s: poll: %s", what, strerror(errno));
  if (p[0].revents) {   /* EOF: the helper's end of the pipe closed, so it is gone */
    close(h->dead_fd);
    close(h->life_fd);
    h->dead_fd = h->life_fd = -1;
    helper_reap(h, 1);
    lua_pushliteral(L, "killed");
    lua_pushinteger(L, WIFSIGNALED(h->status) ? WTERMSIG(h->status) : 0);
    return 2;
  }
  if (watch >= 0 && (p[1].revents & (POLLHUP | POLLERR | POLLNVAL))) lua_pushliteral(L, "hangup");
  else lua_pushliteral(L, "timeout");
  return 1;
}

static int helper_close(lua_State *L) {
  LHelper *h = luaL_testudata(L, 1, MV_HELPER);
  if (!h) return luaL_error(L, "helper:close: expected a %s, got %s", MV_HELPER, lmv_typename(L, 1));
  helper_release(h);
  return 0;
}

static int helper_tostring(lua_State *L) {
  LHelper *h = luaL_checkudata(L, 1, MV_HELPER);
  if (h->pid > 0) lua_pushfstring(L, "AflHelper(pid %d)", (int)h->pid);
  else lua_pushliteral(L, "AflHelper(gone)");
  return 1;
}

/* {====================================================== opening */

static const luaL_Reg shm_methods[] = {
  { "size", shm_size }, { "hit", shm_hit }, { "input", shm_input }, { "read", shm_read },
  { "write", shm_write }, { "close", shm_close }, { NULL, NULL },
};
static const luaL_Reg shm_meta[] = {
  { "__gc", shm_close }, { "__close", shm_close }, { "__tostring", shm_tostring }, { NULL, NULL },
};
static const luaL_Reg helper_methods[] = {
  { "pid", helper_pid }, { "wait", helper_wait }, { "close", helper_close }, { NULL, NULL },
};
static const luaL_Reg helper_meta[] = {
  { "__gc", helper_close }, { "__close", helper_close }, { "__tostring", helper_tostring }, { NULL, NULL },
};
static const luaL_Reg afl_funcs[] = {
  { "attach", afl_attach }, { "create", afl_create }, { "recv", afl_recv }, { "send", afl_send },
  { "isfd", afl_isfd }, { "close", afl_close }, { "helper", afl_helper }, { "getpid", afl_getpid },
  { "getppid", afl_getppid },
  { "raise", afl_raise }, { NULL, NULL },
};

static void newtype(lua_State *L, const char *tname, const luaL_Reg *meta, const luaL_Reg *methods) {
  luaL_newmetatable(L, tname);
  luaL_setfuncs(L, meta, 0);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

/* stack: module table; adds module.afl */
int lmv_open_afl(lua_State *L) {
  newtype(L, MV_SHM, shm_meta, shm_methods);
  newtype(L, MV_HELPER, helper_meta, helper_methods);
  luaL_newlib(L, afl_funcs);
  lua_pushliteral(L, AFL_SHM_ENV);
  lua_setfield(L, -2, "SHM_ENV");
  lua_pushliteral(L, AFL_SHM_FUZZ_ENV);
  lua_setfield(L, -2, "SHM_FUZZ_ENV");
  lua_pushinteger(L, AFL_FORKSRV_FD);
  lua_setfield(L, -2, "FORKSRV_FD");
  lua_setfield(L, -2, "afl");
  return 0;
}
