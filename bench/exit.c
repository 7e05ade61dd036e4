/*
 * bench/exit.c - the exit-cost benchmark behind `make bench`.
 *
 * Owns one question: what does moonvisor add to the cost of a guest exit?
 * The same real-mode guest loop (mov dx,0x3f8 / out dx,al / jmp back) runs
 * N exits three ways, interleaved for R rounds, and the median of each is
 * printed per exit:
 *   (a) raw: the backend alone, no moonvisor code (KVM ioctls, or a bare
 *       Unicorn engine with the same empty per-instruction hook the soft
 *       backend installs);
 *   (b) core: mv_vcpu_enter with a C trap callback;
 *   (c) lua: cpu:enter() with a Lua handler, through require "moonvisor".
 * Run from the repository root (the Lua variant loads scripts/).
 * Usage: build/bench/exit [-b kvm|soft] [-n exits] [-r rounds]
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <unicorn/unicorn.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include "../core/moonvisor.h"

int luaopen_moonvisor_core(lua_State *L);

#define GUEST_MEM 0x10000u
#define ENTRY 0x1000u
#define PORT 0x3f8u
#define MAX_ROUNDS 99
#define KVM_TSS 0xfffbd000ul

static const unsigned char guest_code[] = { 0xba, 0xf8, 0x03, 0xee, 0xeb, 0xfd };

enum { RAW, CORE_C, CORE_LUA, NVARIANTS };
static const char *const variant_names[NVARIANTS] = {
  "(a) raw backend loop", "(b) core + C callback", "(c) core + Lua handler",
};

typedef struct cost { double wall, user, sys; } cost;   /* ns per exit */
typedef struct stamp { struct timespec wall; struct rusage ru; } stamp;

static void die(const char *fmt, const char *arg) {
  fprintf(stderr, "bench/exit: ");
  fprintf(stderr, fmt, arg);
  fputc('\n', stderr);
  exit(1);
}

/* {====================================================== timing */

static stamp take_stamp(void) {
  stamp s;
  clock_gettime(CLOCK_MONOTONIC, &s.wall);
  getrusage(RUSAGE_SELF, &s.ru);
  return s;
}

static double ts_ns(struct timespec t) { return (double)t.tv_sec * 1e9 + (double)t.tv_nsec; }
static double tv_ns(struct timeval t) { return (double)t.tv_sec * 1e9 + (double)t.tv_usec * 1e3; }

static cost per_exit(stamp a, stamp b, long n) {
  return (cost){
    .wall = (ts_ns(b.wall) - ts_ns(a.wall)) / (double)n,
    .user = (tv_ns(b.ru.ru_utime) - tv_ns(a.ru.ru_utime)) / (double)n,
    .sys = (tv_ns(b.ru.ru_stime) - tv_ns(a.ru.ru_stime)) / (double)n,
  };
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(const double *v, int n) {
  double s[MAX_ROUNDS];
  memcpy(s, v, (size_t)n * sizeof *s);
  qsort(s, (size_t)n, sizeof *s, cmp_double);
  return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static cost median_cost(const cost *c, int n) {
  double w[MAX_ROUNDS], u[MAX_ROUNDS], s[MAX_ROUNDS];
  for (int i = 0; i < n; i++) w[i] = c[i].wall, u[i] = c[i].user, s[i] = c[i].sys;
  return (cost){ median(w, n), median(u, n), median(s, n) };
}

/* {====================================================== (a) raw KVM */

typedef struct raw_kvm {
  int kvm, vm, cpu;
  struct kvm_run *run;
  size_t run_size;
  unsigned char *mem;
} raw_kvm;

static void kvm_check(int r, const char *what) {
  if (r < 0) die("raw kvm: %s failed", what);
}

static void raw_kvm_memory(raw_kvm *k) {
  k->mem = mmap(NULL, GUEST_MEM, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (k->mem == MAP_FAILED) die("raw kvm: %s failed", "mmap of guest memory");
  memcpy(k->mem + ENTRY, guest_code, sizeof guest_code);
  struct kvm_userspace_memory_region region = {
    .slot = 0, .guest_phys_addr = 0, .memory_size = GUEST_MEM, .userspace_addr = (__u64)(uintptr_t)k->mem,
  };
  kvm_check(ioctl(k->vm, KVM_SET_TSS_ADDR, KVM_TSS), "KVM_SET_TSS_ADDR");
  kvm_check(ioctl(k->vm, KVM_SET_USER_MEMORY_REGION, &region), "KVM_SET_USER_MEMORY_REGION");
}

/* A VCPU in flat real mode (every segment base 0, selector 0) at ENTRY. */
static void raw_kvm_vcpu(raw_kvm *k) {
  k->cpu = ioctl(k->vm, KVM_CREATE_VCPU, 0);
  kvm_check(k->cpu, "KVM_CREATE_VCPU");
  int size = ioctl(k->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  kvm_check(size, "KVM_GET_VCPU_MMAP_SIZE");
  k->run_size = (size_t)size;
  k->run = mmap(NULL, k->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, k->cpu, 0);
  if (k->run == MAP_FAILED) die("raw kvm: %s failed", "mmap of kvm_run");
  struct kvm_sregs s;
  kvm_check(ioctl(k->cpu, KVM_GET_SREGS, &s), "KVM_GET_SREGS");
  struct kvm_segment *segs[] = { &s.cs, &s.ds, &s.es, &s.fs, &s.gs, &s.ss };
  for (size_t i = 0; i < sizeof segs / sizeof segs[0]; i++) segs[i]->base = 0, segs[i]->selector = 0;
  kvm_check(ioctl(k->cpu, KVM_SET_SREGS, &s), "KVM_SET_SREGS");
  struct kvm_regs r = { .rip = ENTRY, .rflags = 2 };
  kvm_check(ioctl(k->cpu, KVM_SET_REGS, &r), "KVM_SET_REGS");
}

static long raw_kvm_loop(const raw_kvm *k, long n) {
  long count = 0;
  while (count < n) {
    if (ioctl(k->cpu, KVM_RUN, 0) < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      die("raw kvm: KVM_RUN: %s", strerror(errno));
    }
    if (k->run->exit_reason != KVM_EXIT_IO || k->run->io.port != PORT) {
      char why[64];
      snprintf(why, sizeof why, "%u", k->run->exit_reason);
      die("raw kvm: unexpected exit, KVM_EXIT reason %s", why);
    }
    count++;
  }
  return count;
}

static cost run_raw_kvm(long n) {
  raw_kvm k = { .kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC) };
  if (k.kvm < 0) die("raw kvm: /dev/kvm: %s", strerror(errno));
  k.vm = ioctl(k.kvm, KVM_CREATE_VM, 0);
  kvm_check(k.vm, "KVM_CREATE_VM");
  raw_kvm_memory(&k);
  raw_kvm_vcpu(&k);
  stamp t0 = take_stamp();
  long count = raw_kvm_loop(&k, n);
  stamp t1 = take_stamp();
  if (count != n) die("raw kvm: %s", "exit count mismatch");
  munmap(k.run, k.run_size);   /* the mapping would keep the VCPU and VM alive */
  close(k.cpu), close(k.vm), close(k.kvm);
  munmap(k.mem, GUEST_MEM);
  return per_exit(t0, t1, n);
}

/* {====================================================== (a) raw Unicorn */

typedef struct raw_uc { long count, n; } raw_uc;

static void raw_out_hook(uc_engine *uc, uint32_t port, int size, uint32_t value, void *user) {
  (void)port, (void)size, (void)value;
  raw_uc *r = user;
  if (++r->count == r->n) uc_emu_stop(uc);
}

/* The soft backend's code_hook runs before every instruction; so does this. */
static void raw_code_hook(uc_engine *uc, uint64_t addr, uint32_t size, void *user) {
  (void)uc, (void)addr, (void)size, (void)user;
}

static void uc_check(uc_err e, const char *what) {
  if (e != UC_ERR_OK) die("raw unicorn: %s", what);
}

static cost run_raw_soft(long n) {
  unsigned char *mem = mmap(NULL, GUEST_MEM, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) die("raw unicorn: %s failed", "mmap of guest memory");
  memcpy(mem + ENTRY, guest_code, sizeof guest_code);
  uc_engine *uc;
  uc_hook h;
  raw_uc state = { .count = 0, .n = n };
  uint32_t eip = ENTRY, eflags = 2;
  uc_check(uc_open(UC_ARCH_X86, UC_MODE_16, &uc), "uc_open");
  uc_check(uc_mem_map_ptr(uc, 0, GUEST_MEM, UC_PROT_ALL, mem), "uc_mem_map_ptr");
  uc_check(uc_hook_add(uc, &h, UC_HOOK_CODE, raw_code_hook, NULL, 1, 0), "UC_HOOK_CODE");
  uc_check(uc_hook_add(uc, &h, UC_HOOK_INSN, raw_out_hook, &state, 1, 0, UC_X86_INS_OUT), "UC_HOOK_INSN");
  uc_check(uc_reg_write(uc, UC_X86_REG_EIP, &eip), "EIP");
  uc_check(uc_reg_write(uc, UC_X86_REG_EFLAGS, &eflags), "EFLAGS");
  stamp t0 = take_stamp();
  uc_check(uc_emu_start(uc, ENTRY, UINT64_MAX, 0, 0), "uc_emu_start");
  stamp t1 = take_stamp();
  if (state.count != n) die("raw unicorn: %s", "exit count mismatch");
  uc_close(uc);
  munmap(mem, GUEST_MEM);
  return per_exit(t0, t1, n);
}

/* {====================================================== (b) core, C callback */

typedef struct c_trap { long count, n; } c_trap;

static int count_exit(void *cookie, mv_vcpu *cpu, mv_exit *exit, uint64_t *value) {
  (void)cpu, (void)exit, (void)value;
  c_trap *t = cookie;
  return ++t->count == t->n ? MV_TRAP_FAIL : MV_TRAP_DONE;
}

static void mv_check(int r, const mv_err *err) {
  if (r < 0) die("core: %s", err->msg);
}

static cost run_core_c(mv_backend_kind backend, long n) {
  mv_guest_opts opts = { .backend = backend };
  mv_guest *g;
  mv_vmo *vmo;
  mv_vcpu *cpu;
  mv_err err;
  mv_exit exit;
  c_trap trap = { .count = 0, .n = n };
  mv_check(mv_guest_create(&opts, &g, &err), &err);
  mv_check(mv_vmo_create(GUEST_MEM, &vmo, &err), &err);
  mv_check(mv_guest_map(g, 0, vmo, 0, GUEST_MEM, 0, &err), &err);
  mv_check(mv_guest_write(g, ENTRY, guest_code, sizeof guest_code, &err), &err);
  mv_check(mv_guest_set_trap(g, MV_TRAP_IO, PORT, 1, count_exit, NULL, &trap, &err), &err);
  mv_check(mv_vcpu_create(g, ENTRY, &cpu, &err), &err);
  stamp t0 = take_stamp();
  mv_check(mv_vcpu_enter(cpu, &exit, &err), &err);
  stamp t1 = take_stamp();
  if (!exit.handler_failed || trap.count != n) die("core: %s", "run did not end on the Nth exit");
  mv_vcpu_destroy(cpu);
  mv_guest_close(g);
  mv_guest_release(g);
  mv_vmo_release(vmo);
  return per_exit(t0, t1, n);
}

/* {====================================================== (c) core, Lua handler */

/* Called with (backend, N); sets everything up and returns the timed part. */
static const char lua_setup[] =
  "local backend, N = ...\n"
  "local mv = require 'moonvisor'\n"
  "local g = mv.guest{ backend = backend }\n"
  "g:map(0, mv.vmo(0x10000))\n"
  "g:write(0x1000, '\\xba\\xf8\\x03\\xee\\xeb\\xfd')\n"
  "local n = 0\n"
  "g:trap('io', 0x3f8, 1, function(e) n = n + 1; if n == N then error('done') end end)\n"
  "local cpu = g:vcpu{ entry = 0x1000 }\n"
  "return function()\n"
  "  local ok, err = pcall(cpu.enter, cpu)\n"
  "  return n, ok, tostring(err)\n"   /* the guest goes with lua_close, untimed */
  "end\n";

static lua_State *new_lua(void) {
  lua_State *L = luaL_newstate();
  if (!L) die("lua: %s", "out of memory");
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_moonvisor_core);
  lua_setfield(L, -2, "moonvisor.core");
  lua_getglobal(L, "package");
  lua_pushliteral(L, "scripts/?.lua;scripts/?/init.lua");
  lua_setfield(L, -2, "path");
  lua_pop(L, 2);
  return L;
}

static void lua_check(lua_State *L, int status) {
  if (status != LUA_OK) die("lua: %s", lua_tostring(L, -1));
}

static cost run_core_lua(const char *backend, long n) {
  lua_State *L = new_lua();
  lua_check(L, luaL_loadbuffer(L, lua_setup, sizeof lua_setup - 1, "=bench/exit.c"));
  lua_pushstring(L, backend);
  lua_pushinteger(L, n);
  lua_check(L, lua_pcall(L, 2, 1, 0));
  stamp t0 = take_stamp();
  lua_check(L, lua_pcall(L, 0, 3, 0));
  stamp t1 = take_stamp();
  const char *msg = lua_tostring(L, -1);
  if (lua_toboolean(L, -2) || !msg || !strstr(msg, "done")) die("lua: run did not end by the handler: %s", msg);
  if (lua_tointeger(L, -3) != n) die("lua: %s", "exit count mismatch");
  lua_close(L);
  return per_exit(t0, t1, n);
}

/* {====================================================== driver */

typedef struct options { const char *backend, *why; long n; int rounds; } options;

/* Opens /dev/kvm once to say whether the kvm backend could run here. */
static const char *probe_kvm(bool *usable) {
  static char why[128];
  int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  *usable = fd >= 0;
  if (fd >= 0) snprintf(why, sizeof why, "/dev/kvm opened"), close(fd);
  else snprintf(why, sizeof why, "cannot open /dev/kvm: %s", strerror(errno));
  return why;
}

static options parse_args(int argc, char **argv) {
  options o = { .backend = NULL, .n = 1000000, .rounds = 3 };
  int c;
  while ((c = getopt(argc, argv, "b:n:r:")) != -1) {
    if (c == 'b' && (strcmp(optarg, "kvm") == 0 || strcmp(optarg, "soft") == 0)) o.backend = optarg;
    else if (c == 'n') o.n = strtol(optarg, NULL, 10);
    else if (c == 'r') o.rounds = (int)strtol(optarg, NULL, 10);
    else die("%s", "usage: exit [-b kvm|soft] [-n exits] [-r rounds]");
  }
  if (o.n < 1 || o.rounds < 1 || o.rounds > MAX_ROUNDS) die("%s", "-n must be >= 1 and -r in 1..99");
  bool usable;
  static char why[160];
  const char *probe = probe_kvm(&usable);
  snprintf(why, sizeof why, "%s; %s", o.backend ? "chosen with -b" : "default", probe);
  if (!o.backend) o.backend = usable ? "kvm" : "soft";
  o.why = why;
  return o;
}

static cost run_variant(int v, const options *o) {
  bool kvm = strcmp(o->backend, "kvm") == 0;
  switch (v) {
  case RAW: return kvm ? run_raw_kvm(o->n) : run_raw_soft(o->n);
  case CORE_C: return run_core_c(kvm ? MV_BACKEND_KVM : MV_BACKEND_SOFT, o->n);
  default: return run_core_lua(o->backend, o->n);
  }
}

static void print_header(const options *o) {
  bool kvm = strcmp(o->backend, "kvm") == 0;
  printf("moonvisor exit benchmark: backend %s (%s); %ld exits per run, %d rounds interleaved, medians shown\n",
         o->backend, o->why, o->n, o->rounds);
  if (kvm)
    printf("note: wall-clock ratios drift +-20%% between runs on nested-KVM hosts; compare CPU times\n");
  else
    printf("note: baseline (a) is a raw Unicorn loop, not KVM; it installs an empty UC_HOOK_CODE hook\n"
           "      because the soft backend installs one too (every instruction pays for it)\n");
  printf("guest: mov dx,0x3f8 ; out dx,al ; jmp back  (real mode at 0x1000, one IO exit per loop)\n\n");
}

static void print_table(const cost med[NVARIANTS], long n) {
  printf("%-26s %14s %14s %14s %10s %10s\n", "variant", "wall ns/exit", "user ns/exit", "sys ns/exit", "wall x(a)",
         "cpu x(a)");
  double raw_cpu = med[RAW].user + med[RAW].sys;
  for (int v = 0; v < NVARIANTS; v++)   /* ratios against this run's own raw loop: they compare across hosts */
    printf("%-26s %14.1f %14.1f %14.1f %10.2f %10.2f\n", variant_names[v], med[v].wall, med[v].user, med[v].sys,
           med[RAW].wall > 0 ? med[v].wall / med[RAW].wall : 0, raw_cpu > 0 ? (med[v].user + med[v].sys) / raw_cpu : 0);
  if (med[RAW].wall * (double)n < 2e8)
    printf("\nnote: (a) ran %.0f ms; getrusage splits CPU time into user/sys by scheduler ticks,\n"
           "      so short runs split it coarsely (user+sys is exact): raise -n for tighter numbers\n",
           med[RAW].wall * (double)n / 1e6);
  printf("\ncore C callback adds %.1f ns user CPU per exit over raw\n", med[CORE_C].user - med[RAW].user);
  printf("Lua handler adds %.1f ns user CPU per exit over raw\n", med[CORE_LUA].user - med[RAW].user);
}

int main(int argc, char **argv) {
  options o = parse_args(argc, argv);
  print_header(&o);
  fflush(stdout);
  static cost samples[NVARIANTS][MAX_ROUNDS];
  for (int r = 0; r < o.rounds; r++)
    for (int v = 0; v < NVARIANTS; v++) samples[v][r] = run_variant(v, &o);
  cost med[NVARIANTS];
  for (int v = 0; v < NVARIANTS; v++) med[v] = median_cost(samples[v], o.rounds);
  print_table(med, o.n);
  return 0;
}
