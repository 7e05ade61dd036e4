/*
 * main.c - the moonvisor executable: a Lua 5.4 host with moonvisor.core
 * preloaded and scripts/ on package.path.  Runs a script (arg set as lua
 * does), -e chunks, or the REPL (readline: history, completion, multi-line
 * chunks, Ctrl-C stops the guest); every chunk runs under lua_pcall with a
 * traceback, so errors print (and a script exits non-zero) instead of crashing.
 * `moonvisor run ...` hands its arguments to moonvisor.runner (Lua).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <readline/history.h>
#include <readline/readline.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include "lmoonvisor.h"
#include "lpaths.h"
#include "lstate.h"

static const char *progname = "moonvisor";

static void usage(void) {
  fprintf(stderr,
          "usage: %s [options] [script [args]]\n"
          "       %s [options] run -kernel FILE [-append CMDLINE] [-initrd FILE] [-m MIB] [-smp N]\n"
          "                 [-serial stdio|file:PATH] [-gdb tcp::PORT] [-S] [-no-reboot] [-device isa-debug-exit,...]\n"
          "                 (boots a kernel as qemu-system-x86_64 -kernel does; `%s run -h` lists every option)\n"
          "  -e chunk   run the string 'chunk'\n"
          "  -i         enter the prompt after running the script\n"
          "  -v         show the version\n"
          "  --trace F  write every exit of every guest to F (Chrome trace JSON, for Perfetto)\n"
          "  --stats    print exits by type and by trap, with handler time, as guests close\n"
          "  --gdb H:P  the first cpu:enter() (cpu:run(), a machine's run) waits for gdb on H:P and runs under it\n"
          "  --record F   log the run from its first cpu:enter() to F (README: Record and replay)\n"
          "  --replay F   run the guest again with every value from the log F, stopping at the first difference\n"
          "  --verify     with --replay: the handlers run too, and their answers are compared with the log\n"
          "  -          run stdin\n"
          "With no script, opens the REPL (or reads statements from stdin when it is not a terminal).\n"
          "run exits with the guest's status: (v << 1) | 1 for isa-debug-exit value v, 0 on ACPI power-off,\n"
          "2 for bad input, 4 when the guest stopped otherwise, 124 after --timeout.\n",
          progname, progname, progname);
}


static int report(lua_State *L, int status) {
  if (status != LUA_OK) {
    fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
    fflush(stderr);
    lua_pop(L, 1);
  }
  return status;
}

static int docall(lua_State *L, int narg, int nres) {
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, lmv_msghandler);
  lua_insert(L, base);
  int status = lua_pcall(L, narg, nres, base);
  lua_remove(L, base);
  return status;
}

static int run_script(lua_State *L, char **argv, int script, int argc) {
  lua_createtable(L, argc - script, script + 1);   /* arg, as lua.c builds it */
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
  const char *fname = strcmp(argv[script], "-") == 0 ? NULL : argv[script];
  int status = luaL_loadfile(L, fname);
  if (status != LUA_OK) return report(L, status);
  int nargs = argc - script - 1;
  luaL_checkstack(L, nargs, "too many arguments to script");
  for (int i = script + 1; i < argc; i++) lua_pushstring(L, argv[i]);
  return report(L, docall(L, nargs, 0));
}

/* `moonvisor run ...`: moonvisor.runner.main(args) gives the exit status. */
static int run_kernel(lua_State *L, char **argv, int at, int argc, int *exit_status) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "moonvisor.runner");
  int status = docall(L, 1, 1);
  if (status != LUA_OK) return report(L, status);
  lua_getfield(L, -1, "main");
  lua_remove(L, -2);
  lua_createtable(L, argc - at, 0);
  for (int i = at + 1; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - at);
  }
  status = docall(L, 1, 1);
  if (status != LUA_OK) return report(L, status);
  *exit_status = (int)luaL_optinteger(L, -1, 1);
  lua_pop(L, 1);
  return LUA_OK;
}

/* {====================================================== the REPL */

/* The REPL's Lua side is scripts/moonvisor/repl.lua: it pretty-prints
 * results and completes names; without it results go through print. */
#define PROMPT "moonvisor> "
#define PROMPT2 ">> "
#define EOFMARK "<eof>"

typedef struct Repl {
  lua_State *L;
  int lib;                  /* registry ref of moonvisor.repl, LUA_NOREF without it */
  char *chunk;              /* the lines of an incomplete chunk so far */
  size_t len, cap;
  int tty;                  /* prompts, readline, history, Ctrl-C */
  const char *history;      /* the history file, NULL for none */
  int done;                 /* Ctrl-D */
} Repl;

/* What the SIGINT handler needs: it may only set flags, kick and set a hook. */
static lua_State *volatile sig_L;
static volatile sig_atomic_t sig_running;    /* a typed statement is running */
static volatile sig_atomic_t sig_kicked;     /* this statement's VCPU was kicked already */
static volatile sig_atomic_t sig_seen;       /* Ctrl-C while it ran: the output starts a line */
static volatile sig_atomic_t sig_prompt;     /* Ctrl-C at the prompt, not yet handled */
static Repl *active;                         /* for readline's callbacks, which take no cookie */

/* GNU readline is dlopen()ed when the REPL first needs it, as libunicorn and
 * libcapstone are: linked, its relocations cost every start about half a
 * million instructions.  (The headers give the types; nothing is linked.) */
#define RL_FN(name) __typeof__(&rl_##name) name
#define HIST_FN(name) __typeof__(&name) name
static struct {
  bool loaded;
  RL_FN(callback_handler_install); RL_FN(callback_read_char); RL_FN(callback_handler_remove);
  RL_FN(set_prompt); RL_FN(free_line_state); RL_FN(callback_sigcleanup); RL_FN(replace_line);
  RL_FN(crlf); RL_FN(on_new_line); RL_FN(redisplay); RL_FN(completion_matches);
  HIST_FN(add_history); HIST_FN(append_history); HIST_FN(history_get); HIST_FN(read_history);
  HIST_FN(write_history); HIST_FN(history_truncate_file); HIST_FN(using_history);
  __typeof__(&rl_readline_name) readline_name;
  __typeof__(&rl_catch_signals) catch_signals;
  __typeof__(&rl_completer_word_break_characters) completer_word_break_characters;
  __typeof__(&rl_attempted_completion_function) attempted_completion_function;
  __typeof__(&rl_attempted_completion_over) attempted_completion_over;
  __typeof__(&rl_completion_suppress_append) completion_suppress_append;
  __typeof__(&history_length) history_length;
  __typeof__(&history_base) history_base;
} rl;

static bool readline_load(void) {
  if (rl.loaded) return true;
  void *h = dlopen("libreadline.so.8", RTLD_NOW | RTLD_GLOBAL);
  if (!h) h = dlopen("libreadline.so", RTLD_NOW | RTLD_GLOBAL);
  if (!h) return false;
  bool ok = true;
#define SYM(field, name) ok = ok && (*(void **)&rl.field = dlsym(h, name)) != NULL
  SYM(callback_handler_install, "rl_callback_handler_install"); SYM(callback_read_char, "rl_callback_read_char");
  SYM(callback_handler_remove, "rl_callback_handler_remove"); SYM(set_prompt, "rl_set_prompt");
  SYM(free_line_state, "rl_free_line_state"); SYM(callback_sigcleanup, "rl_callback_sigcleanup");
  SYM(replace_line, "rl_replace_line"); SYM(crlf, "rl_crlf"); SYM(on_new_line, "rl_on_new_line");
  SYM(redisplay, "rl_redisplay"); SYM(completion_matches, "rl_completion_matches");
  SYM(add_history, "add_history"); SYM(append_history, "append_history"); SYM(history_get, "history_get");
  SYM(read_history, "read_history"); SYM(write_history, "write_history");
  SYM(history_truncate_file, "history_truncate_file"); SYM(using_history, "using_history");
  SYM(readline_name, "rl_readline_name"); SYM(catch_signals, "rl_catch_signals");
  SYM(completer_word_break_characters, "rl_completer_word_break_characters");
  SYM(attempted_completion_function, "rl_attempted_completion_function");
  SYM(attempted_completion_over, "rl_attempted_completion_over");
  SYM(completion_suppress_append, "rl_completion_suppress_append");
  SYM(history_length, "history_length"); SYM(history_base, "history_base");
#undef SYM
  if (!ok) {
    dlclose(h);
    return false;
  }
  rl.loaded = true;
  return true;
}

static void lstop(lua_State *L, lua_Debug *ar) {   /* as lua.c */
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted!");
}

/* Ctrl-C: at the prompt, clears the line; while a statement runs, kicks the
 * VCPU inside enter (the guest stops intact and enter returns a kick exit);
 * pressed again, or when no guest runs, stops the Lua code as lua.c does. */
static void on_sigint(int sig) {
  (void)sig;
  if (!sig_running) {
    sig_prompt = 1;
    return;
  }
  sig_seen = 1;
  if (!sig_kicked && (lmv_kick_entering() | lmv_stop_running())) {   /* cpu:enter, guest:run */
    sig_kicked = 1;
    return;
  }
  lmv_kick_entering();
  lmv_stop_running();
  lua_sethook(sig_L, lstop, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

/* The message and a short traceback: the REPL's own frames are left out. */
static int repl_msghandler(lua_State *L) {
  lmv_msghandler(L);
  const char *msg = lua_tostring(L, -1);
  const char *tail = msg ? strstr(msg, "\n\t[C]: in ?") : NULL;
  if (tail && tail[strlen("\n\t[C]: in ?")] == '\0') lua_pushlstring(L, msg, (size_t)(tail - msg));
  return 1;
}

/* Runs the function on top with the REPL's handler and Ctrl-C set up. */
static int repl_call(Repl *r, int narg, int nres) {
  lua_State *L = r->L;
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, repl_msghandler);
  lua_insert(L, base);
  sig_kicked = 0;
  sig_running = r->tty;
  int status = lua_pcall(L, narg, nres, base);
  sig_running = 0;
  lua_sethook(L, NULL, 0, 0);   /* a Ctrl-C that came too late to stop anything */
  if (sig_seen) fputc('\n', stdout);   /* after the terminal's ^C */
  sig_seen = 0;
  lua_remove(L, base);
  return status;
}

/* Prints the values above top through repl.pretty (or print). */
static void repl_print(Repl *r, int top) {
  lua_State *L = r->L;
  int n = lua_gettop(L) - top;
  if (n == 0) return;
  luaL_checkstack(L, 2, "too many results to print");
  if (r->lib != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->lib);
    lua_getfield(L, -1, "print");
    lua_remove(L, -2);
  } else {
    lua_getglobal(L, "print");
  }
  lua_insert(L, top + 1);
  report(L, repl_call(r, n, 0));
}

static int incomplete(lua_State *L, int status) {   /* as lua.c: a syntax error at <eof> */
  if (status != LUA_ERRSYNTAX) return 0;
  size_t lmsg;
  const char *msg = lua_tolstring(L, -1, &lmsg);
  return lmsg >= sizeof EOFMARK - 1 && strcmp(msg + lmsg - (sizeof EOFMARK - 1), EOFMARK) == 0;
}

static void chunk_add(Repl *r, const char *line) {
  size_t n = strlen(line), need = r->len + n + 2;
  if (need > r->cap) {
    size_t cap = r->cap ? r->cap : 256;
    while (cap < need) cap *= 2;
    char *p = realloc(r->chunk, cap);
    if (!p) {
      fprintf(stderr, "%s: out of memory\n", progname);
      return;
    }
    r->chunk = p;
    r->cap = cap;
  }
  if (r->len) r->chunk[r->len++] = '\n';
  memcpy(r->chunk + r->len, line, n + 1);
  r->len += n;
}

static void remember(Repl *r) {   /* the whole chunk is one history entry, as in lua.c */
  if (!r->tty || r->len == 0) return;
  HIST_ENTRY *last = *rl.history_length > 0 ? rl.history_get(*rl.history_base + *rl.history_length - 1) : NULL;
  if (last && strcmp(last->line, r->chunk) == 0) return;
  rl.add_history(r->chunk);
  if (r->history) rl.append_history(1, r->history);
}

/* Feeds one line.  Returns 1 while the chunk is incomplete.  An expression
 * is tried first ("return " prepended), then a statement. */
static int repl_line(Repl *r, const char *line) {
  lua_State *L = r->L;
  chunk_add(r, line);
  if (r->len == 0) return 0;
  int top = lua_gettop(L);
  const char *ret = lua_pushfstring(L, "return %s", r->chunk);
  int status = luaL_loadbuffer(L, ret, strlen(ret), "=stdin");
  lua_remove(L, -2);
  if (status != LUA_OK) {
    lua_pop(L, 1);
    status = luaL_loadbuffer(L, r->chunk, r->len, "=stdin");
    if (incomplete(L, status)) {
      lua_pop(L, 1);
      return 1;
    }
  }
  remember(r);
  r->len = 0;
  if (status == LUA_OK) status = repl_call(r, 0, LUA_MULTRET);
  if (status != LUA_OK) report(L, status);
  else repl_print(r, top);
  lua_settop(L, top);
  return 0;
}

/* moonvisor.repl: its helpers become globals; missing, the REPL still works. */
static void repl_load(Repl *r) {
  lua_State *L = r->L;
  r->lib = LUA_NOREF;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "moonvisor.repl");
  if (docall(L, 1, 1) != LUA_OK) {
    fprintf(stderr, "%s: no REPL helpers: %s\n", progname, lua_tostring(L, -1));
    lua_pop(L, 1);
    return;
  }
  lua_getfield(L, -1, "install");
  lua_pushglobaltable(L);
  if (lua_isfunction(L, -2)) report(L, docall(L, 1, 0));
  else lua_pop(L, 2);
  r->lib = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* {------------------------------------------------------ readline */


/* Tab completion through repl.complete(word, _G): globals, fields,
 * methods.  The candidates are copied out of Lua for readline's generator. */
static char **candidates;
static size_t ncandidates;

static char *complete_next(const char *text, int state) {
  static size_t i;
  (void)text;
  if (state == 0) i = 0;
  return i < ncandidates ? strdup(candidates[i++]) : NULL;
}

static char **complete(const char *text, int start, int end) {
  (void)start; (void)end;
  *rl.attempted_completion_over = 1;   /* no file names */
  *rl.completion_suppress_append = 1;
  for (size_t i = 0; i < ncandidates; i++) free(candidates[i]);
  ncandidates = 0;
  if (active->lib == LUA_NOREF) return NULL;
  lua_State *L = active->L;
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, active->lib);
  lua_getfield(L, -1, "complete");
  lua_pushstring(L, text);
  lua_pushglobaltable(L);
  if (docall(L, 2, 1) == LUA_OK && lua_istable(L, -1)) {
    size_t n = (size_t)luaL_len(L, -1);
    char **c = realloc(candidates, (n + 1) * sizeof *c);
    if (c) {
      candidates = c;
      for (size_t i = 1; i <= n; i++, lua_pop(L, 1))
        if (lua_rawgeti(L, -1, (lua_Integer)i) == LUA_TSTRING && (c[ncandidates] = strdup(lua_tostring(L, -1))))
          ncandidates++;
    }
  }
  lua_settop(L, top);
  return ncandidates ? rl.completion_matches(text, complete_next) : NULL;
}

static void on_line(char *line) {
  Repl *r = active;
  if (!line) {
    r->done = 1;
    rl.callback_handler_remove();
    return;
  }
  int more = repl_line(r, line);
  free(line);
  rl.set_prompt(more ? PROMPT2 : PROMPT);
}

static void clear_line(Repl *r) {   /* Ctrl-C at the prompt */
  sig_prompt = 0;
  r->len = 0;
  rl.free_line_state();
  rl.callback_sigcleanup();
  rl.replace_line("", 0);
  rl.crlf();
  rl.on_new_line();
  rl.set_prompt(PROMPT);
  rl.redisplay();
}

static void history_open(Repl *r) {
  static char path[PATH_MAX];
  const char *env = getenv("MOONVISOR_HISTORY"), *home = getenv("HOME");
  if (env && *env) snprintf(path, sizeof path, "%s", env);
  else if (home && *home) snprintf(path, sizeof path, "%s/.moonvisor_history", home);
  else return;
  r->history = path;
  rl.using_history();
  if (rl.read_history(path) != 0) rl.write_history(path);   /* append_history needs the file */
  else rl.history_truncate_file(path, 1000);
}

static void repl_tty(Repl *r) {
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;   /* no SA_RESTART: select returns at once */
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old);
  history_open(r);
  *rl.readline_name = "moonvisor";
  *rl.catch_signals = 0;
  *rl.completer_word_break_characters = " \t\n\"\\'`><=;+-*/%^~#&|,()[]{}";
  *rl.attempted_completion_function = complete;
  rl.callback_handler_install(PROMPT, on_line);
  while (!r->done) {
    fd_set in;
    FD_ZERO(&in);
    FD_SET(STDIN_FILENO, &in);
    int n = select(STDIN_FILENO + 1, &in, NULL, NULL, NULL);
    if (sig_prompt) clear_line(r);
    if (n > 0) rl.callback_read_char();
    else if (n < 0 && errno != EINTR) break;
  }
  if (!r->done) rl.callback_handler_remove();
  fputc('\n', stdout);
  sigaction(SIGINT, &old, NULL);
}

/* {------------------------------------------------------ */

/* The prompt: readline on a terminal; on a pipe, statements without prompts. */
static void prompt_loop(lua_State *L) {
  Repl r = { .L = L, .tty = isatty(STDIN_FILENO) };
  if (r.tty && !readline_load()) {
    fprintf(stderr, "%s: no line editing: libreadline.so.8 could not be loaded (apt-get install libreadline8)\n", progname);
    r.tty = 0;
  }
  sig_L = L;
  repl_load(&r);
  active = &r;
  if (r.tty) {
    repl_tty(&r);
  } else {
    char line[8192];
    while (fgets(line, sizeof line, stdin)) {
      size_t len = strlen(line);
      while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
      repl_line(&r, line);
    }
    if (r.len && luaL_loadbuffer(L, r.chunk, r.len, "=stdin") != LUA_OK) report(L, LUA_ERRSYNTAX);
  }
  active = NULL;
  if (r.lib != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, r.lib);
  free(r.chunk);
}

/* }====================================================== */

/* require("moonvisor").configure{ [key] = value } for --trace, --stats and --gdb. */
static int configure(lua_State *L, const char *key, const char *value) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "moonvisor");
  int status = docall(L, 1, 1);
  if (status != LUA_OK) return report(L, status);
  lua_getfield(L, -1, "configure");
  lua_remove(L, -2);
  lua_createtable(L, 0, 1);
  if (value) lua_pushstring(L, value);
  else lua_pushboolean(L, 1);
  lua_setfield(L, -2, key);
  return report(L, docall(L, 1, 0));
}

/* --record / --replay: require("moonvisor.replay").finish() ends the log
 * (or checks the replay's end) and prints the state hash. */
static int finish_recording(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "moonvisor.replay");
  int status = docall(L, 1, 1);
  if (status != LUA_OK) return report(L, status);
  lua_getfield(L, -1, "finish");
  lua_remove(L, -2);
  return report(L, docall(L, 0, 0));
}

int main(int argc, char **argv) {
  if (argv[0] && argv[0][0]) progname = argv[0];
  lua_State *L = mv_state_new();
  if (!L) {
    fprintf(stderr, "%s: cannot create the Lua state: out of memory\n", progname);
    return 1;
  }
  luaL_openlibs(L);
  mv_paths_init(L);
  int interactive = 0, ran = 0, script = 0, status = LUA_OK, recording = 0;
  for (int i = 1; i < argc && status == LUA_OK && !script; i++) {
    if (strcmp(argv[i], "-e") == 0) {
      if (++i >= argc) {
        usage();
        status = LUA_ERRRUN;
        break;
      }
      status = luaL_loadbuffer(L, argv[i], strlen(argv[i]), "=(command line)");
      if (status == LUA_OK) status = docall(L, 0, 0);
      report(L, status);
      ran = 1;
    } else if (strcmp(argv[i], "-i") == 0) {
      interactive = 1;
    } else if (strcmp(argv[i], "--trace") == 0) {
      if (++i >= argc) {
        usage();
        status = LUA_ERRRUN;
        break;
      }
      status = configure(L, "trace", argv[i]);
    } else if (strcmp(argv[i], "--gdb") == 0) {
      if (++i >= argc) {
        usage();
        status = LUA_ERRRUN;
        break;
      }
      status = configure(L, "gdb", argv[i]);
    } else if (strcmp(argv[i], "--record") == 0 || strcmp(argv[i], "--replay") == 0) {
      if (++i >= argc) {
        usage();
        status = LUA_ERRRUN;
        break;
      }
      status = configure(L, argv[i - 1] + 2, argv[i]);
      recording = 1;
    } else if (strcmp(argv[i], "--verify") == 0) {
      status = configure(L, "verify", NULL);
    } else if (strcmp(argv[i], "--stats") == 0) {
      status = configure(L, "stats", NULL);
    } else if (strcmp(argv[i], "-v") == 0) {
      printf("moonvisor %s (%s)\n", MV_VERSION, LUA_RELEASE);
      ran = 1;
    } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      usage();
      ran = 1;
    } else if (strcmp(argv[i], "run") == 0) {
      int exit_status = 1;
      status = run_kernel(L, argv, i, argc, &exit_status);
      mv_state_close(L);
      return status == LUA_OK ? exit_status : 1;
    } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
      fprintf(stderr, "%s: unrecognized option '%s'\n", progname, argv[i]);
      usage();
      status = LUA_ERRRUN;
    } else {
      script = i;
    }
  }
  if (status == LUA_OK && script) {
    status = run_script(L, argv, script, argc);
    if (status == LUA_OK && recording) status = finish_recording(L);
    ran = 1;
  }
  if (status == LUA_OK && (interactive || !ran)) prompt_loop(L);
  mv_state_close(L);
  return status == LUA_OK ? 0 : 1;
}
