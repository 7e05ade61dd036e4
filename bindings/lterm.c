/*
 * lterm.c - the host terminal as a guest's console (scripts/moonvisor/console.lua):
 *   core.isatty(fd)              -> boolean
 *   core.term_raw([fd])          -> Term: fd (default 0) in raw mode: no echo,
 *                                   no line editing, no signals from Ctrl-C or
 *                                   Ctrl-Z (those bytes are the guest's)
 *   term:read([max[, timeout_ms]]) -> the bytes there are (up to max, 4096 by
 *                                   default), nil on timeout, "" at end of input
 *   term:write(bytes)            -> writes all of bytes to fd 1 (stdout), again
 *                                   after EINTR and partial writes: VCPU
 *                                   timeouts are signals without SA_RESTART,
 *                                   and stdio would drop bytes a slow
 *                                   terminal had not taken when one came
 *   term:restore()               -> the terminal as it was (also __close, __gc)
 *   core.read_fd(fd[, max[, timeout_ms]]) -> what fd (a pipe, a file: stdin
 *                                   when it is no terminal) has, as term:read
 * The terminal's settings from before are one per process (there is one
 * terminal): they are put back by restore, by a normal exit (atexit) and by
 * SIGTERM/SIGHUP/SIGQUIT/SIGINT (restored, then the signal's default action,
 * where the program had left that signal's default action), so no
 * way out of moonvisor leaves the shell in raw mode.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>
#include "lmoonvisor.h"

#define MV_TERM "moonvisor.Term"

typedef struct LTerm {
  int fd;   /* -1 once restored */
} LTerm;

/* The one terminal in raw mode, and its settings from before. */
static struct { int fd; struct termios saved; } raw_term = { .fd = -1 };

static void restore_raw_term(void) {
  if (raw_term.fd >= 0) tcsetattr(raw_term.fd, TCSAFLUSH, &raw_term.saved);
  raw_term.fd = -1;
}

static void restore_on_signal(int sig) {
  restore_raw_term();   /* tcsetattr is async-signal-safe */
  signal(sig, SIG_DFL);
  raise(sig);
}

static void install_restorers(void) {
  static int installed;
  if (installed) return;
  installed = 1;
  atexit(restore_raw_term);
  int sigs[] = { SIGTERM, SIGHUP, SIGQUIT, SIGINT };
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
    struct sigaction old;
    if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_DFL) signal(sigs[i], restore_on_signal);
  }
}

static int mod_isatty(lua_State *L) {
  lua_Integer fd = lmv_checkint(L, 1, "mv.isatty", "fd");
  lua_pushboolean(L, fd >= 0 && fd <= 0x7fffffff && isatty((int)fd));
  return 1;
}

static int mod_term_raw(lua_State *L) {
  lua_Integer fd = luaL_opt(L, lua_tointeger, 1, 0);
  if (!lua_isnoneornil(L, 1) && !lua_isinteger(L, 1))
    return luaL_error(L, "mv.term_raw: fd must be an integer, got %s", lmv_typename(L, 1));
  if (raw_term.fd >= 0) return luaL_error(L, "mv.term_raw: the terminal (fd %d) is already in raw mode", raw_term.fd);
  LTerm *t = lua_newuserdatauv(L, sizeof *t, 0);
  t->fd = -1;
  luaL_setmetatable(L, MV_TERM);
  struct termios saved, raw;
  if (fd < 0 || fd > 0x7fffffff || tcgetattr((int)fd, &saved) < 0)
    return luaL_error(L, "mv.term_raw: fd %I is not a terminal: %s", (LUAI_UACINT)fd, strerror(errno));
  raw = saved;
  cfmakeraw(&raw);   /* no echo, canonical mode, signals, CR/NL translation */
  raw.c_oflag |= OPOST | ONLCR;   /* but the guest's "\n" still starts a line */
  install_restorers();
  raw_term.fd = (int)fd;
  raw_term.saved = saved;
  if (tcsetattr((int)fd, TCSAFLUSH, &raw) < 0) {
    raw_term.fd = -1;
    return luaL_error(L, "mv.term_raw: tcsetattr: %s", strerror(errno));
  }
  t->fd = (int)fd;
  return 1;
}

static LTerm *checkterm(lua_State *L, const char *what) {
  LTerm *t = luaL_testudata(L, 1, MV_TERM);
  if (!t) luaL_error(L, "%s: expected a %s, got %s", what, MV_TERM, lmv_typename(L, 1));
  else if (t->fd < 0) luaL_error(L, "%s: the terminal was restored", what);
  return t;
}

/* Up to max bytes from fd once it has some (poll, at most ms; -1: no
 * bound): pushes them, "" at end of input, nothing on timeout. */
static int read_ready(lua_State *L, int fd, lua_Integer max, lua_Integer ms, const char *what) {
  if (max < 1 || max > 1 << 20) return luaL_error(L, "%s: max %I is not in 1..1048576", what, (LUAI_UACINT)max);
  if (ms < -1 || ms > 0x7fffffff) return luaL_error(L, "%s: timeout_ms %I is not in 0..2^31-1", what, (LUAI_UACINT)ms);
  struct pollfd p = { .fd = fd, .events = POLLIN };
  int r;
  while ((r = poll(&p, 1, (int)ms)) < 0 && errno == EINTR) {}
  if (r < 0) return luaL_error(L, "%s: poll: %s", what, strerror(errno));
  if (r == 0) return 0;
  luaL_Buffer b;
  char *buf = luaL_buffinitsize(L, &b, (size_t)max);
  ssize_t n;
  while ((n = read(fd, buf, (size_t)max)) < 0 && errno == EINTR) {}
  if (n < 0) return luaL_error(L, "%s: %s", what, strerror(errno));
  luaL_pushresultsize(&b, (size_t)n);
  return 1;
}

static int term_read(lua_State *L) {
  LTerm *t = checkterm(L, "term:read");
  return read_ready(L, t->fd, luaL_opt(L, lua_tointeger, 2, 4096), luaL_opt(L, lua_tointeger, 3, -1), "term:read");
}

static int mod_read_fd(lua_State *L) {
  lua_Integer fd = lmv_checkint(L, 1, "mv.read_fd", "fd");
  if (fd < 0 || fd > 0x7fffffff) return luaL_error(L, "mv.read_fd: fd %I is not a file descriptor", (LUAI_UACINT)fd);
  return read_ready(L, (int)fd, luaL_opt(L, lua_tointeger, 2, 4096), luaL_opt(L, lua_tointeger, 3, -1), "mv.read_fd");
}

static int term_write(lua_State *L) {
  checkterm(L, "term:write");
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  while (len > 0) {
    ssize_t n = write(STDOUT_FILENO, s, len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {   /* a non-blocking stdout: wait until it takes more */
      struct pollfd p = { .fd = STDOUT_FILENO, .events = POLLOUT };
      poll(&p, 1, 100);
      continue;
    }
    if (n < 0) return luaL_error(L, "term:write: %s", strerror(errno));
    s += n;
    len -= (size_t)n;
  }
  return 0;
}

static int term_restore(lua_State *L) {
  LTerm *t = luaL_checkudata(L, 1, MV_TERM);
  if (t->fd >= 0 && t->fd == raw_term.fd) restore_raw_term();
  t->fd = -1;
  return 0;
}

static int term_tostring(lua_State *L) {
  LTerm *t = luaL_checkudata(L, 1, MV_TERM);
  if (t->fd < 0) lua_pushliteral(L, "Term(restored)");
  else lua_pushfstring(L, "Term(fd=%d, raw)", t->fd);
  return 1;
}

static const luaL_Reg term_methods[] = {
  { "read", term_read }, { "write", term_write }, { "restore", term_restore }, { NULL, NULL },
};

static const luaL_Reg term_meta[] = {
  { "__gc", term_restore }, { "__close", term_restore }, { "__tostring", term_tostring }, { NULL, NULL },
};

static const luaL_Reg term_funcs[] = {
  { "isatty", mod_isatty }, { "term_raw", mod_term_raw }, { "read_fd", mod_read_fd }, { NULL, NULL },
};

int lmv_open_term(lua_State *L) {
  luaL_newmetatable(L, MV_TERM);
  luaL_setfuncs(L, term_meta, 0);
  luaL_newlib(L, term_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_setfuncs(L, term_funcs, 0);   /* into the module table on the stack */
  return 0;
}
