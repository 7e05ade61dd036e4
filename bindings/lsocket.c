/*
 * lsocket.c - minimal TCP sockets for the gdb stub (scripts/moonvisor/gdb.lua),
 * so that no LuaSocket is needed.  Blocking calls with poll() timeouts:
 *   core.tcp_listen(host, port)          -> Listener (port 0: any free port)
 *   listener:accept([timeout_ms])        -> Conn, or nil on timeout
 *   listener:port()  listener:close()
 *   core.tcp_connect(host, port[, timeout_ms]) -> Conn
 *   conn:recv(max[, timeout_ms])         -> string (1..max bytes), nil on timeout;
 *                                           error on EOF ("connection closed")
 *   conn:send(str)                       -> sends all of it
 *   conn:close()
 * Timeouts: nil waits forever, 0 polls.  Errors name the call.  Descriptors
 * are close-on-exec; __gc and __close close them, idempotently.  SIGPIPE is
 * avoided with MSG_NOSIGNAL.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include "lmoonvisor.h"

#define MV_LISTENER "moonvisor.Listener"
#define MV_CONN "moonvisor.Conn"

typedef struct LSock {
  int fd;   /* -1 once closed */
} LSock;

static LSock *checksock(lua_State *L, int idx, const char *tname, const char *what) {
  LSock *s = luaL_testudata(L, idx, tname);
  if (!s) luaL_error(L, "%s: expected a %s, got %s", what, tname, lmv_typename(L, idx));
  else if (s->fd < 0) luaL_error(L, "%s: attempt to use a closed socket", what);
  return s;
}

static LSock *newsock(lua_State *L, const char *tname) {
  LSock *s = lua_newuserdatauv(L, sizeof *s, 0);
  s->fd = -1;
  luaL_setmetatable(L, tname);
  return s;
}

/* A timeout argument in ms: -1 (forever) for nil. */
static int opt_timeout(lua_State *L, int idx, const char *what) {
  if (lua_isnoneornil(L, idx)) return -1;
  lua_Integer ms = lmv_checkint(L, idx, what, "timeout_ms");
  if (ms < 0 || ms > 0x7fffffff) return luaL_error(L, "%s: timeout_ms %I is not in 0..2^31-1", what, (LUAI_UACINT)ms);
  return (int)ms;
}

/* poll() for events, restarting after signals; 1 ready, 0 timeout. */
static int wait_fd(lua_State *L, int fd, short events, int ms, const char *what) {
  struct pollfd p = { .fd = fd, .events = events };
  for (;;) {
    int r = poll(&p, 1, ms);
    if (r >= 0) return r;
    if (errno != EINTR) return luaL_error(L, "%s: poll: %s", what, strerror(errno));
  }
}

static struct addrinfo *resolve(lua_State *L, int passive, const char *what) {
  const char *host = lmv_checklstring(L, 1, NULL, what, "host");
  lua_Integer port = lmv_checkint(L, 2, what, "port");
  if (port < 0 || port > 65535) luaL_error(L, "%s: port %I is not in 0..65535", what, (LUAI_UACINT)port);
  char service[8];
  snprintf(service, sizeof service, "%d", (int)port);
  struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                            .ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0) };
  struct addrinfo *ai = NULL;
  int r = getaddrinfo(*host ? host : NULL, service, &hints, &ai);
  if (r != 0) luaL_error(L, "%s: %s:%d: %s", what, host, (int)port, gai_strerror(r));
  return ai;
}

static int tcp_listen(lua_State *L) {
  const char *what = "core.tcp_listen";
  struct addrinfo *ai = resolve(L, 1, what);
  LSock *s = newsock(L, MV_LISTENER);
  int err = 0;
  for (struct addrinfo *a = ai; a; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) { err = errno; continue; }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 4) == 0) {
      s->fd = fd;
      break;
    }
    err = errno;
    close(fd);
  }
  freeaddrinfo(ai);
  if (s->fd < 0)
    return luaL_error(L, "%s: %s:%d: %s", what, lua_tostring(L, 1), (int)lua_tointeger(L, 2), strerror(err));
  return 1;
}

static int tcp_connect(lua_State *L) {
  const char *what = "core.tcp_connect";
  int ms = opt_timeout(L, 3, what);
  struct addrinfo *ai = resolve(L, 0, what);
  LSock *s = newsock(L, MV_CONN);
  int err = ECONNREFUSED;
  for (struct addrinfo *a = ai; a && s->fd < 0; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) { err = errno; continue; }
    int r = connect(fd, a->ai_addr, a->ai_addrlen);
    if (r < 0 && errno == EINPROGRESS) {
      struct pollfd p = { .fd = fd, .events = POLLOUT };
      while ((r = poll(&p, 1, ms)) < 0 && errno == EINTR) {}
      socklen_t len = sizeof err;
      if (r == 0) { err = ETIMEDOUT; r = -1; }
      else if (r > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) r = 0;
      else { if (r < 0) err = errno; r = -1; }
    } else if (r < 0) {
      err = errno;
    }
    if (r == 0) {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      s->fd = fd;   /* stays non-blocking: recv and send poll first */
    } else {
      close(fd);
    }
  }
  freeaddrinfo(ai);
  if (s->fd < 0)
    return luaL_error(L, "%s: %s:%d: %s", what, lua_tostring(L, 1), (int)lua_tointeger(L, 2), strerror(err));
  return 1;
}

static int listener_accept(lua_State *L) {
  const char *what = "listener:accept";
  LSock *l = checksock(L, 1, MV_LISTENER, what);
  int ms = opt_timeout(L, 2, what);
  if (wait_fd(L, l->fd, POLLIN, ms, what) == 0) {
    lua_pushnil(L);
    return 1;
  }
  LSock *c = newsock(L, MV_CONN);
  int fd;
  while ((fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) < 0 && errno == EINTR) {}
  if (fd < 0) {
    if (errno == EAGAIN || errno == ECONNABORTED) {   /* the client went before we took it */
      lua_pushnil(L);
      return 1;
    }
    return luaL_error(L, "%s: %s", what, strerror(errno));
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  c->fd = fd;
  return 1;
}

static int listener_port(lua_State *L) {
  LSock *l = checksock(L, 1, MV_LISTENER, "listener:port");
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(l->fd, (struct sockaddr *)&ss, &len) < 0)
    return luaL_error(L, "listener:port: %s", strerror(errno));
  int port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                      : ntohs(((struct sockaddr_in *)&ss)->sin_port);
  lua_pushinteger(L, port);
  return 1;
}

static int conn_recv(lua_State *L) {
  const char *what = "conn:recv";
  LSock *c = checksock(L, 1, MV_CONN, what);
  lua_Integer max = lmv_checkint(L, 2, what, "max");
  if (max < 1 || max > (1 << 20)) return luaL_error(L, "%s: max %I is not in 1..1048576", what, (LUAI_UACINT)max);
  int ms = opt_timeout(L, 3, what);
  if (wait_fd(L, c->fd, POLLIN, ms, what) == 0) {
    lua_pushnil(L);
    return 1;
  }
  luaL_Buffer b;
  char *p = luaL_buffinitsize(L, &b, (size_t)max);
  ssize_t n;
  while ((n = recv(c->fd, p, (size_t)max, 0)) < 0 && errno == EINTR) {}
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    lua_pushnil(L);
    return 1;
  }
  if (n < 0) return luaL_error(L, "%s: %s", what, strerror(errno));
  if (n == 0) return luaL_error(L, "%s: connection closed by the peer", what);
  luaL_pushresultsize(&b, (size_t)n);
  return 1;
}

static int conn_send(lua_State *L) {
  const char *what = "conn:send";
  LSock *c = checksock(L, 1, MV_CONN, what);
  size_t len;
  const char *s = lmv_checklstring(L, 2, &len, what, "data");
  size_t off = 0;
  while (off < len) {
    ssize_t n = send(c->fd, s + off, len - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (wait_fd(L, c->fd, POLLOUT, 10000, what) == 0) return luaL_error(L, "%s: timed out (peer not reading)", what);
      continue;
    }
    if (n < 0) return luaL_error(L, "%s: %s", what, strerror(errno));
    off += (size_t)n;
  }
  return 0;
}

static int sock_close(lua_State *L) {
  LSock *s = luaL_testudata(L, 1, MV_CONN);
  if (!s) s = luaL_testudata(L, 1, MV_LISTENER);
  if (!s) return luaL_error(L, "socket:close: expected a moonvisor.Conn or Listener, got %s", lmv_typename(L, 1));
  if (s->fd >= 0) {
    close(s->fd);
    s->fd = -1;
  }
  return 0;
}

static int sock_tostring(lua_State *L) {
  LSock *s = luaL_testudata(L, 1, MV_CONN);
  const char *kind = "Conn";
  if (!s) { s = luaL_checkudata(L, 1, MV_LISTENER); kind = "Listener"; }
  if (s->fd < 0) lua_pushfstring(L, "%s(closed)", kind);
  else lua_pushfstring(L, "%s(fd=%d)", kind, s->fd);
  return 1;
}

static const luaL_Reg listener_methods[] = {
  { "accept", listener_accept }, { "port", listener_port }, { "close", sock_close }, { NULL, NULL },
};
static const luaL_Reg conn_methods[] = {
  { "recv", conn_recv }, { "send", conn_send }, { "close", sock_close }, { NULL, NULL },
};
static const luaL_Reg sock_meta[] = {
  { "__gc", sock_close }, { "__close", sock_close }, { "__tostring", sock_tostring }, { NULL, NULL },
};

static void newtype(lua_State *L, const char *tname, const luaL_Reg *methods) {
  luaL_newmetatable(L, tname);
  luaL_setfuncs(L, sock_meta, 0);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

int lmv_open_socket(lua_State *L) {
  newtype(L, MV_LISTENER, listener_methods);
  newtype(L, MV_CONN, conn_methods);
  lua_pushcfunction(L, tcp_listen);
  lua_setfield(L, -2, "tcp_listen");
  lua_pushcfunction(L, tcp_connect);
  lua_setfield(L, -2, "tcp_connect");
  return 0;
}
