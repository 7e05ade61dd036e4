/*
 * smp.c - running several VCPUs of a guest together (mv_guest_run) and
 * stopping them (mv_guest_stop).  Two schedulers:
 *
 * - threaded (kvm): one thread per VCPU in mv_vcpu_enter, the caller waiting
 *   on an eventfd.  Trap callbacks run on the thread of the VCPU that exited;
 *   the shared state of the exit path (trap tables and their counters, the
 *   trace) is guarded by the run's mutex `mu`, never held across a callback,
 *   so callbacks on different VCPUs may run at once (the Lua bindings take a
 *   lock of their own around Lua handlers).  A VCPU whose run ends in `hlt`
 *   waits for an interrupt posted from another thread; when all wait, the
 *   run ends.
 * - round-robin (backends with set_budget, i.e. soft): the caller's thread
 *   enters each VCPU in turn for a quantum of guest instructions.  Nothing
 *   else decides the interleaving, so it is the same on every run.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include "internal.h"

#define DEFAULT_QUANTUM 1000

typedef struct mv_smp mv_smp;

typedef struct smp_slot {
  mv_smp *s;
  mv_vcpu *cpu;
  int index;             /* in cpus[] */
  pthread_t thread;      /* threaded: its thread (written before the start gate opens) */
  bool created;
  bool halted;           /* waiting for an interrupt (mu; soft: the scheduler's) */
  uint32_t mail[8];      /* vectors posted from other threads (atomic) */
  int wake;              /* atomic: a post kicked it, the kick exit is not an end */
} smp_slot;

struct mv_smp {
  mv_guest *g;
  bool threaded;
  int n;
  smp_slot *slots;
  pthread_mutex_t mu;    /* the exit path's shared state during a threaded run, and: */
  pthread_cond_t cv;     /*   the start gate and halted VCPUs wait here */
  bool go;               /*   the gate is open */
  int nhalted;           /*   VCPUs waiting in hlt */
  bool decided;          /*   res/rc say why the run ends */
  mv_run_result res;
  int rc;                /* < 0: a VCPU's enter failed with err */
  mv_err err;
  int stop;              /* atomic: the run is ending */
  int efd;               /* threaded: the waiting caller's eventfd, or -1 */
  mv_vcpu *current;      /* round-robin: the VCPU being entered */
};

static bool stopped(mv_smp *s) { return __atomic_load_n(&s->stop, __ATOMIC_ACQUIRE); }

/* Async-signal-safe: every VCPU leaves the guest, the caller wakes. */
static void request_stop(mv_smp *s) {
  __atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
  for (int i = 0; i < s->n; i++) mv_vcpu_kick(s->slots[i].cpu);
  if (s->efd >= 0) {
    uint64_t one = 1;
    ssize_t w = write(s->efd, &one, sizeof one);
    (void)w;
  }
}

/* The first reason given wins; with mu held when threaded (locked = true). */
static void decide_locked(mv_smp *s, mv_run_reason reason, int index, const mv_exit *e, int rc, const mv_err *err) {
  if (s->decided) return;
  s->decided = true;
  s->res.reason = reason;
  s->res.cpu = index;
  if (e) s->res.exit = *e;
  s->rc = rc;
  if (rc < 0 && err) s->err = *err;
}

static void decide(mv_smp *s, mv_run_reason reason, int index, const mv_exit *e, int rc, const mv_err *err) {
  if (s->threaded) pthread_mutex_lock(&s->mu);
  decide_locked(s, reason, index, e, rc, err);
  if (s->threaded) pthread_mutex_unlock(&s->mu);
  request_stop(s);
}

void mv_guest_stop(mv_guest *g) {
  mv_smp *s = __atomic_load_n(&g->smp, __ATOMIC_ACQUIRE);
  if (s) request_stop(s);
}

bool mv_guest_running(const mv_guest *g) { return __atomic_load_n(&g->smp, __ATOMIC_ACQUIRE) != NULL; }

void mv__smp_lock(mv_guest *g) {
  if (g->threaded) pthread_mutex_lock(&g->smp->mu);
}

void mv__smp_unlock(mv_guest *g) {
  if (g->threaded) pthread_mutex_unlock(&g->smp->mu);
}

static smp_slot *slot_of(mv_smp *s, const mv_vcpu *c) {
  for (int i = 0; i < s->n; i++)
    if (s->slots[i].cpu == c) return &s->slots[i];
  return NULL;
}

const char *mv__smp_refuse(const mv_vcpu *c, bool entering) {
  mv_smp *s = c->guest->smp;
  if (!s) return NULL;
  smp_slot *sl = slot_of(s, c);
  if (!sl) return NULL;
  if (s->threaded)
    return pthread_equal(sl->thread, pthread_self()) ? NULL : "is running on another thread (in guest:run)";
  if (entering && s->current != c) return "takes part in guest:run (its scheduler enters it)";
  return NULL;
}

/* {====================================================== interrupts between threads */

static bool mail_pending(smp_slot *sl) {
  for (int w = 0; w < 8; w++)
    if (__atomic_load_n(&sl->mail[w], __ATOMIC_ACQUIRE)) return true;
  return false;
}

static void take_mail(smp_slot *sl) {
  for (int w = 0; w < 8; w++) {
    uint32_t bits = __atomic_exchange_n(&sl->mail[w], 0, __ATOMIC_ACQ_REL);
    for (int b = 0; b < 32; b++)
      if (bits >> b & 1) mv_vcpu_interrupt(sl->cpu, (uint32_t)(w * 32 + b), NULL);   /* own thread: queued */
  }
}

bool mv__smp_post_interrupt(mv_vcpu *c, uint32_t vector) {
  mv_smp *s = c->guest->smp;
  if (!s || !s->threaded || vector > 255) return false;
  smp_slot *sl = slot_of(s, c);
  if (!sl || pthread_equal(sl->thread, pthread_self())) return false;
  __atomic_fetch_or(&sl->mail[vector / 32], UINT32_C(1) << (vector % 32), __ATOMIC_ACQ_REL);
  __atomic_store_n(&sl->wake, 1, __ATOMIC_RELEASE);
  mv_vcpu_kick(c);
  pthread_mutex_lock(&s->mu);
  pthread_cond_broadcast(&s->cv);   /* it may be waiting in hlt */
  pthread_mutex_unlock(&s->mu);
  return true;
}

/* {====================================================== the exit path, threaded */

int mv__smp_access(mv_vcpu *c, mv_exit *e, uint64_t *value) {
  mv_guest *g = c->guest;
  mv_smp *s = g->smp;
  uint64_t answer = mv__size_ones(e->size);
  e->trap_id = 0;
  pthread_mutex_lock(&s->mu);
  mv_trap *tr = mv__trap_find(e->type == MV_EXIT_IO ? &g->io : &g->mem, e->addr);
  mv_trap t = tr ? *tr : (mv_trap){ .id = 0 };
  if (tr && (tr->kind != MV_TRAP_BELL || e->write)) tr->calls++;
  bool timed = g->timing || g->trace;
  pthread_mutex_unlock(&s->mu);
  if (!t.id) {                /* unclaimed: the caller of enter sees it */
    if (!e->write) *value = e->data = answer;
    return MV_ACCESS_STOP;
  }
  mv_exit bell = { .type = MV_EXIT_BELL, .addr = e->addr, .write = true, .trap_id = (uint32_t)t.id };
  mv_exit *x = e;
  if (t.kind == MV_TRAP_BELL) {
    if (!e->write) {          /* doorbells are write-only: reads see an empty bus */
      *value = answer;
      return MV_ACCESS_CONTINUE;
    }
    x = &bell;                /* delivered at once, on this VCPU's thread */
  }
  x->trap_id = (uint32_t)t.id;
  c->stats.handled[x->type]++;
  uint64_t t0 = timed ? mv__now_ns() : 0;
  int r = t.fn(t.cookie, c, x, &answer);
  if (timed) {
    uint64_t dt = mv__now_ns() - t0;
    c->stats.handler_ns += dt;
    pthread_mutex_lock(&s->mu);
    mv_trap *still = mv__trap_find(x->type == MV_EXIT_IO ? &g->io : &g->mem, x->addr);
    if (still && still->id == t.id) still->ns += dt;
    if (g->trace) {
      if (!x->write && r != MV_TRAP_FAIL) x->data = answer;
      g->trace(g->trace_cookie, c, x, t0, dt);
    }
    pthread_mutex_unlock(&s->mu);
  }
  bool ok = r != MV_TRAP_FAIL && !__atomic_load_n(&g->close_requested, __ATOMIC_ACQUIRE);
  if (!ok && x == &bell) *e = bell;
  return mv__access_answered(e, ok, answer, value);
}

/* Doorbells written through ioeventfds: the counts are taken under the
 * mutex, the callbacks called without it. */
int mv__smp_bells_drain(mv_guest *g, mv_vcpu *c, mv_exit *failed) {
  mv_smp *s = g->smp;
  for (size_t i = 0;; i++) {
    pthread_mutex_lock(&s->mu);
    if (i >= g->mem.count || g->closed) {
      pthread_mutex_unlock(&s->mu);
      return MV_TRAP_DONE;
    }
    mv_trap t = g->mem.items[i];
    uint64_t n = t.bell_fd >= 0 && g->be->bell_take ? g->be->bell_take(g, &t) : 0;
    g->mem.items[i].calls += n;
    pthread_mutex_unlock(&s->mu);
    for (; n > 0; n--) {
      mv_exit e = { .type = MV_EXIT_BELL, .addr = t.addr, .write = true, .trap_id = (uint32_t)t.id };
      uint64_t ignored = 0;
      c->stats.handled[MV_EXIT_BELL]++;
      if (t.fn(t.cookie, c, &e, &ignored) == MV_TRAP_FAIL) {
        e.handler_failed = true;
        *failed = e;
        return MV_TRAP_FAIL;
      }
    }
  }
}

/* {====================================================== threaded runs */

/* A VCPU that ran into hlt: waits until an interrupt is posted to it or the
 * run ends; the last one to halt ends it.  True: run it again. */
static bool wait_halted(mv_smp *s, smp_slot *sl) {
  if (mv__has_interrupt(sl->cpu) || mail_pending(sl)) return !stopped(s);
  pthread_mutex_lock(&s->mu);
  sl->halted = true;
  s->nhalted++;
  while (!stopped(s) && !mail_pending(sl)) {
    bool all = s->nhalted == s->n;
    for (int i = 0; all && i < s->n; i++) all = !mail_pending(&s->slots[i]);
    if (all) {
      decide_locked(s, MV_RUN_HALTED, -1, NULL, 0, NULL);
      request_stop(s);
      pthread_cond_broadcast(&s->cv);
      break;
    }
    pthread_cond_wait(&s->cv, &s->mu);
  }
  sl->halted = false;
  s->nhalted--;
  pthread_mutex_unlock(&s->mu);
  return !stopped(s);
}

static void *worker(void *arg) {
  smp_slot *sl = arg;
  mv_smp *s = sl->s;
  pthread_mutex_lock(&s->mu);
  while (!s->go) pthread_cond_wait(&s->cv, &s->mu);
  pthread_mutex_unlock(&s->mu);
  mv_exit e;
  mv_err err;
  while (!stopped(s)) {
    take_mail(sl);
    int r = mv_vcpu_enter(sl->cpu, &e, &err);
    if (r < 0) {
      decide(s, MV_RUN_EXIT, sl->index, NULL, r, &err);
      break;
    }
    if (e.type == MV_EXIT_KICK && !e.handler_failed) {
      if (stopped(s)) break;
      if (__atomic_exchange_n(&sl->wake, 0, __ATOMIC_ACQ_REL)) continue;   /* an interrupt was posted */
    } else if (e.type == MV_EXIT_HLT && !e.handler_failed) {
      if (wait_halted(s, sl)) continue;
      break;
    }
    decide(s, MV_RUN_EXIT, sl->index, &e, 0, NULL);
    break;
  }
  return NULL;
}

static int run_threaded(mv_smp *s, const mv_run_opts *o, mv_err *err) {
  s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (s->efd < 0) return mv__fail(err, -errno, "guest:run: eventfd: %s", strerror(errno));
  mv__install_kick_signal();
  sigset_t all, old;   /* the VCPU threads take the kick signal only: Ctrl-C reaches the caller */
  sigfillset(&all);
  sigdelset(&all, mv__kick_signal());
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = 0;
  for (int i = 0; i < s->n; i++) {
    int e = pthread_create(&s->slots[i].thread, NULL, worker, &s->slots[i]);
    if (e) {
      rc = mv__fail(err, -e, "guest:run: pthread_create for VCPU %d: %s", s->slots[i].cpu->id, strerror(e));
      __atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
      break;
    }
    s->slots[i].created = true;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_mutex_lock(&s->mu);
  s->go = true;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  uint64_t deadline = o->timeout_ns ? mv__now_ns() + o->timeout_ns : 0;
  while (!stopped(s)) {
    struct timespec ts, *tp = NULL;
    if (deadline) {
      uint64_t now = mv__now_ns();
      if (now >= deadline) {
        decide(s, MV_RUN_TIMEOUT, -1, NULL, 0, NULL);
        break;
      }
      ts.tv_sec = (time_t)((deadline - now) / 1000000000u);
      ts.tv_nsec = (long)((deadline - now) % 1000000000u);
      tp = &ts;
    }
    struct pollfd p = { .fd = s->efd, .events = POLLIN };
    if (ppoll(&p, 1, tp, NULL) > 0) {
      uint64_t n;
      ssize_t rd = read(s->efd, &n, sizeof n);
      (void)rd;
    }
  }
  request_stop(s);
  pthread_mutex_lock(&s->mu);
  pthread_cond_broadcast(&s->cv);   /* halted VCPUs */
  pthread_mutex_unlock(&s->mu);
  for (int i = 0; i < s->n; i++)
    if (s->slots[i].created) pthread_join(s->slots[i].thread, NULL);
  close(s->efd);
  s->efd = -1;
  return rc;
}

/* {====================================================== round-robin runs */

static void run_round_robin(mv_smp *s, const mv_run_opts *o) {
  mv_guest *g = s->g;
  uint64_t quantum = o->quantum ? o->quantum : DEFAULT_QUANTUM;
  uint64_t deadline = o->timeout_ns ? mv__now_ns() + o->timeout_ns : 0;
  mv_exit e;
  mv_err err;
  while (!stopped(s)) {
    bool ran = false;
    for (int i = 0; i < s->n && !stopped(s); i++) {
      smp_slot *sl = &s->slots[i];
      mv_vcpu *c = sl->cpu;
      if (sl->halted) {
        if (!mv__has_interrupt(c)) continue;
        sl->halted = false;
      }
      ran = true;
      s->current = c;
      g->be->set_budget(c, quantum);
      int r = mv_vcpu_enter(c, &e, &err);
      if (!c->destroyed && !g->closed) g->be->set_budget(c, 0);
      s->current = NULL;
      s->res.turns++;
      if (r < 0) {
        decide(s, MV_RUN_EXIT, i, NULL, r, &err);
        break;
      }
      if (e.type == MV_EXIT_KICK && !e.handler_failed) {
        if (e.reason == MV_REASON_QUANTUM) continue;
        if (stopped(s)) break;
      } else if (e.type == MV_EXIT_HLT && !e.handler_failed) {
        sl->halted = true;
        continue;
      }
      decide(s, MV_RUN_EXIT, i, &e, 0, NULL);
      break;
    }
    if (stopped(s)) break;
    if (!ran) decide(s, MV_RUN_HALTED, -1, NULL, 0, NULL);
    else if (deadline && mv__now_ns() >= deadline) decide(s, MV_RUN_TIMEOUT, -1, NULL, 0, NULL);
  }
}

/* {====================================================== mv_guest_run */

int mv_guest_run(mv_guest *g, mv_vcpu *const *cpus, int n, const mv_run_opts *opts, mv_run_result *res,
                 mv_err *err) {
  static const mv_run_opts none;
  const mv_run_opts *o = opts ? opts : &none;
  if (g->closed) return mv__fail(err, -EBADF, "guest:run: guest is closed");
  if (g->smp) return mv__fail(err, -EBUSY, "guest:run: the guest is running already (guest:run from a trap handler?)");
  if (n < 1 || n > MV_MAX_VCPUS) return mv__fail(err, -EINVAL, "guest:run: %d VCPUs (1..%d)", n, MV_MAX_VCPUS);
  for (int i = 0; i < g->nvcpus; i++)
    if (g->vcpus[i] && g->vcpus[i]->in_enter)
      return mv__fail(err, -EBUSY, "guest:run: VCPU %d of this guest is inside enter (guest:run from a trap handler?)",
                      g->vcpus[i]->id);
  if (g->rec && !g->be->set_budget)   /* the recorder takes one thread at a time */
    return mv__fail(err, -EBUSY, "guest:run: the guest is recording or replaying: its VCPUs cannot run on threads "
                    "of their own (enter them one at a time, or use the soft backend)");
  for (int i = 0; i < n; i++) {
    if (!cpus[i] || cpus[i]->destroyed) return mv__fail(err, -EBADF, "guest:run: VCPU %d is closed", i);
    if (cpus[i]->guest != g) return mv__fail(err, -EINVAL, "guest:run: VCPU %d belongs to another guest", cpus[i]->id);
    for (int j = 0; j < i; j++)
      if (cpus[j] == cpus[i]) return mv__fail(err, -EINVAL, "guest:run: VCPU %d is listed twice", cpus[i]->id);
  }
  mv_smp *s = calloc(1, sizeof *s);
  smp_slot *slots = calloc((size_t)n, sizeof *slots);
  if (!s || !slots) {
    free(s);
    free(slots);
    return mv__fail(err, -ENOMEM, "guest:run: out of memory");
  }
  s->g = g;
  s->n = n;
  s->slots = slots;
  s->efd = -1;
  s->threaded = g->be->set_budget == NULL;
  s->res.cpu = -1;
  for (int i = 0; i < n; i++) slots[i] = (smp_slot){ .s = s, .cpu = cpus[i], .index = i };
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  g->threaded = s->threaded;
  mv__guest_rehook(g);
  __atomic_store_n(&g->smp, s, __ATOMIC_RELEASE);
  int rc = s->threaded ? run_threaded(s, o, err) : (run_round_robin(s, o), 0);
  __atomic_store_n(&g->smp, NULL, __ATOMIC_RELEASE);
  g->threaded = false;
  mv__guest_rehook(g);
  if (stopped(s))   /* the run's own kicks: the next enter must not see them */
    for (int i = 0; i < n; i++) __atomic_store_n(&cpus[i]->kick_pending, 0, __ATOMIC_RELAXED);
  if (!s->decided) decide_locked(s, MV_RUN_STOP, -1, NULL, 0, NULL);
  if (rc == 0 && s->rc < 0) {
    rc = s->rc;
    mv__fail(err, rc, "guest:run: VCPU %d: %s", cpus[s->res.cpu]->id, s->err.msg);
  }
  *res = s->res;
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  free(slots);
  free(s);
  if (__atomic_load_n(&g->close_requested, __ATOMIC_ACQUIRE)) {
    g->close_requested = false;
    mv_guest_close(g);
    return mv__fail(err, -EBADF, "guest:run: the guest was closed by a trap handler");
  }
  return rc;
}
