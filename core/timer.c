/*
 * timer.c - the kick signal and run timeouts.  One real-time signal makes a
 * VCPU thread leave KVM_RUN (another thread's kick) and carries timeout
 * expiries (a POSIX timer aimed at the running thread).  The handler only
 * sets flags, so it is async-signal-safe.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "internal.h"

/* The VCPU this thread runs under a timeout, for the signal handler. */
static _Thread_local mv_vcpu *timed_vcpu;

int mv__kick_signal(void) { return SIGRTMIN + 4; }

static void on_kick_signal(int sig, siginfo_t *si, void *ctx) {
  (void)sig; (void)ctx;
  mv_vcpu *c = timed_vcpu;
  if (si->si_code == SI_TIMER && c) {
    c->timed_out = 1;
    mv_vcpu_kick(c);
  }   /* a kick from another thread: interrupting KVM_RUN was the point */
}

void mv__install_kick_signal(void) {
  static _Atomic int installed;   /* asked once per process: a sigaction per run costs a system call */
  if (installed) return;
  installed = 1;
  struct sigaction old;
  if (sigaction(mv__kick_signal(), NULL, &old) == 0 && old.sa_handler == SIG_DFL) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_kick_signal;
    sa.sa_flags = SA_SIGINFO;   /* no SA_RESTART: KVM_RUN must return EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(mv__kick_signal(), &sa, NULL);
  }
}

/* The thread's timer, made by its first timed run and kept (armed and
 * disarmed per run: two system calls instead of a create and a delete). */
static _Thread_local timer_t thread_timer;
static _Thread_local int thread_timer_made;

int mv_vcpu_enter_timeout(mv_vcpu *c, uint64_t timeout_ns, mv_exit *exit, mv_err *err) {
  if (timeout_ns == 0 || mv__rec_no_timer(c->guest)) return mv_vcpu_enter(c, exit, err);   /* replay: the log times it */
  if (timed_vcpu) return mv__fail(err, -EBUSY, "vcpu:enter: another timed run is active on this thread");
  mv__install_kick_signal();
  if (!thread_timer_made) {
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = mv__kick_signal();
    sev._sigev_un._tid = gettid();
    if (timer_create(CLOCK_MONOTONIC, &sev, &thread_timer) < 0)
      return mv__fail(err, -errno, "vcpu:enter: timer_create: %s", strerror(errno));
    thread_timer_made = 1;
  }
  struct itimerspec its = { .it_value = { .tv_sec = (time_t)(timeout_ns / 1000000000u),
                                          .tv_nsec = (long)(timeout_ns % 1000000000u) } };
  timed_vcpu = c;
  c->timed_out = 0;
  timer_settime(thread_timer, 0, &its, NULL);
  int r = mv_vcpu_enter(c, exit, err);
  static const struct itimerspec off;
  timer_settime(thread_timer, 0, &off, NULL);   /* a signal still pending is delivered on return from here */
  timed_vcpu = NULL;
  if (c->timed_out) {
    if (r == 0 && exit->type == MV_EXIT_KICK) exit->type = MV_EXIT_TIMEOUT;
    else c->kick_pending = 0;   /* the run ended on its own just before the timer fired */
    c->timed_out = 0;
  }
  return r;
}

void mv__timer_unwound(mv_vcpu *c) {
  if (timed_vcpu != c) return;
  static const struct itimerspec off;
  timer_settime(thread_timer, 0, &off, NULL);
  timed_vcpu = NULL;
  if (c->timed_out) c->kick_pending = 0;   /* the timeout fired during the failed handler: it ends nothing now */
  c->timed_out = 0;
}
