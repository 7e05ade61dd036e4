/*
 * record_run.c - recording and replaying a run: starting and finishing a
 * recorder, the hooks the core calls while one is attached (mv__rec_*:
 * accesses, exits enter returns, interrupts, host writes to memory and
 * registers, maps) and the replayer, which answers the guest from the log,
 * applies what handlers did, places kicks and timeouts, and names the first
 * difference.  The format itself is record.c's.
 *
 * Who made a record matters: a trap handler's actions (flagged H in the
 * log) are applied by the replayer (record_apply.c), since handlers do not
 * run; the script's own actions between exits must be made again by the
 * script, and are compared.  Writes the backend makes itself inside a run
 * (a real-mode interrupt frame) are neither.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "record_int.h"

static bool quiet(const mv_rec *r) { return r->replay && !(r->flags & MV_REPLAY_VERIFY); }

static uint64_t rip_of(mv_vcpu *c) {
  if (c->guest->be->access_rip) return c->guest->be->access_rip(c);
  mv_regs regs;
  return c->guest->be->get_regs(c, &regs, NULL) == 0 ? regs.rip : 0;
}

static int diverge(mv_rec *r, mv_vcpu *c, const char *what, const unsigned char *exp, size_t en, const enc *got,
                   const char *got_text, mv_err *err) {
  return mv__rec_diverge(r, c, what, exp, en, got, got_text, err);
}

static int apply_pending(mv_rec *r, mv_vcpu *at, mv_err *err) { return mv__rec_apply(r, at, false, err); }
static int apply_records(mv_rec *r, mv_vcpu *at, bool script_only, mv_err *err) {
  return mv__rec_apply(r, at, script_only, err);
}

/* Time travel: once the replay reached the exit asked for, stop the run. */
static void check_stop(mv_rec *r, mv_vcpu *c) {
  if (r->stop_at && r->exits >= r->stop_at && !r->forced) {
    r->forced = true;
    c->kick_pending = 1;
  }
}

/* When the log's next record is a kick or timeout of c, make the run stop
 * there: at the recorded instruction count where the backend counts them,
 * else as soon as the run goes on. */
static void arm_kick(mv_rec *r, mv_vcpu *c) {
  const unsigned char *p;
  size_t n;
  if (!mv__rec_peek(r, &p, &n) || (p[0] & 0x7f) != K_RET || n < 3 || p[1] != c->id ||
      (p[2] != MV_EXIT_KICK && p[2] != MV_EXIT_TIMEOUT))
    return;
  if (!r->g->be->counts_instructions) {
    c->kick_pending = 1;
    return;
  }
  dec d = { p, n, 3, false };
  getv(&d), getv(&d), getv(&d);
  uint64_t icount = getv(&d);
  if (!d.bad) c->stop_icount = r->icount0[c->id] + icount + 1;
}

/* {====================================================== hooks */

/* A host action: logged (recording) or compared with the log (replaying).
 * prefix: the log's record may go on after the event's bytes (a handler's
 * host write carries its data). */
static int host_event(mv_rec *r, mv_vcpu *c, enc *e, bool prefix, const void *data, size_t ndata, const char *what,
                      mv_err *err) {
  if (r->applying || r->finished) return 0;
  bool handler = r->in_handler > 0;
  if (r->enter_depth > 0 && !handler) return 0;   /* the backend's own, inside a run */
  if (handler) e->b[0] |= H_FLAG;
  if (!r->replay) {   /* a handler's write carries its bytes: the replayer applies it */
    mv__rec_append_data(r, e, data, handler ? ndata : 0);
    return 0;
  }
  if (r->diverged) return mv__fail(err, -EILSEQ, "%s: %s: %s", what, r->path, r->div_msg);
  const unsigned char *p;
  size_t n;
  bool more = mv__rec_peek(r, &p, &n);
  if (!more || n < e->n || (!prefix && n != e->n) || memcmp(p, e->b, e->n) != 0)
    return diverge(r, c, what, more ? p : NULL, n, e, NULL, err);
  mv__rec_consume(r);
  return 0;
}

int mv__rec_hostw(mv_guest *g, uint64_t gpa, const void *src, uint64_t len, const char *what, mv_err *err) {
  mv_rec *r = g->rec;
  if (r->applying || r->finished || (r->enter_depth > 0 && r->in_handler == 0)) return 0;
  const unsigned char *b = src;
  for (uint64_t done = 0; done < len || (len == 0 && done == 0); ) {
    uint64_t n = len - done < HOSTW_CHUNK ? len - done : HOSTW_CHUNK;
    enc e;
  e.n = 0;
    put8(&e, K_HOSTW);
    putv(&e, gpa + done);
    putv(&e, n);
    put64(&e, mv__hash_bytes(5, b + done, (size_t)n));
    int rc = host_event(r, NULL, &e, true, b + done, (size_t)n, what, err);
    if (rc < 0) return rc;
    done += n;
    if (len == 0) break;
  }
  return 0;
}

int mv__rec_vmo_write(mv_vmo *vmo, uint64_t off, const void *src, uint64_t len, mv_err *err) {
  mv_rec *r = vmo->rec;
  if (!r->g) return 0;
  for (size_t i = 0; i < r->g->nmaps; i++) {
    const mv_mapping *m = &r->g->maps[i];
    if (m->vmo == vmo && off >= m->offset && off - m->offset < m->size)
      return mv__rec_hostw(r->g, m->gpa + (off - m->offset), src, len, "vmo:write", err);
  }
  return 0;
}

int mv__rec_regs(mv_vcpu *c, const mv_regs *regs, mv_err *err) {
  enc e;
  e.n = 0;
  put8(&e, K_REGS);
  put8(&e, (unsigned)c->id);
  const uint64_t *v = &regs->rax;   /* mv_regs: 18 uint64_t in a row */
  for (int i = 0; i < 18; i++) putv(&e, v[i]);
  return host_event(c->guest->rec, c, &e, false, NULL, 0, "vcpu:write_state", err);
}

int mv__rec_sregs(mv_vcpu *c, const mv_sregs *s, mv_err *err) {
  enc e;
  e.n = 0;
  put8(&e, K_SREGS);
  put8(&e, (unsigned)c->id);
  e.n += mv__rec_put_sregs(e.b + e.n, s);
  return host_event(c->guest->rec, c, &e, false, NULL, 0, "vcpu:write_sregs", err);
}

int mv__rec_msr(mv_vcpu *c, uint32_t index, uint64_t value, mv_err *err) {
  enc e;
  e.n = 0;
  put8(&e, K_MSR);
  put8(&e, (unsigned)c->id);
  putv(&e, index);
  putv(&e, value);
  return host_event(c->guest->rec, c, &e, false, NULL, 0, "vcpu:write_msr", err);
}

int mv__rec_fpu(mv_vcpu *c, const mv_fpu *f, mv_err *err) {
  enc e;
  e.n = 0;
  put8(&e, K_FPU);
  put8(&e, (unsigned)c->id);
  putraw(&e, f->st, 80), putraw(&e, &f->fcw, 2), putraw(&e, &f->fsw, 2), put8(&e, f->ftw);
  putraw(&e, &f->mxcsr, 4), putraw(&e, f->xmm, 256);
  return host_event(c->guest->rec, c, &e, false, NULL, 0, "vcpu:write_fpu", err);
}

int mv__rec_cpuid(mv_vcpu *c, uint32_t leaf, uint32_t subleaf, const uint32_t regs[4], mv_err *err) {
  enc e;
  e.n = 0;
  put8(&e, K_CPUID);
  put8(&e, (unsigned)c->id);
  putv(&e, leaf);
  putv(&e, subleaf);
  for (int i = 0; i < 4; i++) putv(&e, regs[i]);
  return host_event(c->guest->rec, c, &e, false, NULL, 0, "vcpu:cpuid_set", err);
}

int mv__rec_irq(mv_vcpu *c, uint32_t vector, mv_err *err) {
  enc e;
  e.n = 0;
  put8(&e, K_IRQ);
  put8(&e, (unsigned)c->id);
  put8(&e, vector);
  return host_event(c->guest->rec, c, &e, false, NULL, 0, "vcpu:interrupt", err);
}

int mv__rec_irq_line(mv_guest *g, uint32_t line, int level, mv_err *err) {
  enc e;
  e.n = 0;
  put8(&e, K_IRQLINE);
  putv(&e, line);
  put8(&e, (unsigned)level & 0xff);
  return host_event(g->rec, NULL, &e, false, NULL, 0, "guest:irq", err);
}

int mv__rec_map(mv_guest *g, uint64_t gpa, uint64_t size, unsigned flags, uint64_t offset, mv_vmo *vmo, mv_err *err) {
  mv_rec *r = g->rec;
  if (!vmo->rec) vmo->rec = r;   /* its host writes are logged from now on */
  enc e;
  e.n = 0;
  put8(&e, K_MAP);
  putv(&e, gpa);
  putv(&e, size);
  putv(&e, flags);
  putv(&e, offset);
  return host_event(r, NULL, &e, false, NULL, 0, "guest:map", err);
}

int mv__rec_unmap(mv_guest *g, uint64_t gpa, mv_err *err) {
  mv_rec *r = g->rec;
  enc e;
  e.n = 0;
  put8(&e, K_UNMAP);
  putv(&e, gpa);
  int rc = host_event(r, NULL, &e, false, NULL, 0, "guest:unmap", err);
  const mv_mapping *m = mv__guest_find_mapping(g, gpa);
  if (rc == 0 && m && m->vmo->rec == r) m->vmo->rec = NULL;
  return rc;
}

void mv__rec_deliver(mv_vcpu *c, int vector) {
  mv_rec *r = c->guest->rec;
  if (r->finished || (r->replay && r->diverged)) return;
  enc e;
  e.n = 0;
  put8(&e, K_DELIVER);
  put8(&e, (unsigned)c->id);
  put8(&e, (unsigned)vector & 0xff);
  putv(&e, c->icount - r->icount0[c->id]);
  if (!r->replay) {
    mv__rec_append(r, &e);
    return;
  }
  const unsigned char *p;
  size_t n;
  bool more = mv__rec_peek(r, &p, &n);
  if (!more || n != e.n || memcmp(p, e.b, n) != 0) {
    diverge(r, c, "vcpu:enter", more ? p : NULL, n, &e, NULL, NULL);
    c->kick_pending = 1;   /* stop the run: enter reports it */
    return;
  }
  mv__rec_consume(r);
  arm_kick(r, c);
  check_stop(r, c);
}

/* mv__access while a recorder is attached. */
static unsigned char *pv(unsigned char *p, uint64_t v) {
  while (v >= 0x80) {
    *p++ = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  *p++ = (unsigned char)v;
  return p;
}

/* Recording an access: the hot path, encoded straight into the block. */
static int record_access(mv_rec *r, mv_vcpu *c, mv_exit *x, uint64_t *value) {
  uint64_t rip = rip_of(c);
  r->in_handler++;
  int st = mv__access_traps(c, x, value);
  r->in_handler--;
  if (r->finished) return st;   /* the handler ended the log */
  if (r->blen + 64 > BLOCK_CAP) mv__rec_flush(r);
  unsigned char *b0 = r->blk + r->blen, *p = b0 + 1;   /* b0: the length, at most 46 */
  *p++ = K_ACCESS;
  *p++ = (unsigned char)c->id;
  *p++ = (unsigned char)(x->type | (x->write ? 4u : 0u));
  *p++ = (unsigned char)x->size;
  p = pv(p, x->addr);
  p = pv(p, rip);
  if (x->write) p = pv(p, x->data);
  *p++ = (unsigned char)((st == MV_ACCESS_STOP ? 1u : 0u) | (x->handler_failed ? 2u : 0u));
  if (!x->write) p = pv(p, *value);
  *b0 = (unsigned char)(p - b0 - 1);
  r->blen += (size_t)(p - b0);
  r->records++;
  r->exits++;
  return st;
}

int mv__rec_access(mv_vcpu *c, mv_exit *x, uint64_t *value) {
  mv_rec *r = c->guest->rec;
  if (r->finished) return mv__access_traps(c, x, value);
  if (!r->replay) return record_access(r, c, x, value);
  enc e;
  e.n = 0;   /* never "enc e = { 0 }" in these hooks: it clears all REC_MAX bytes, every exit */
  put8(&e, K_ACCESS);
  put8(&e, (unsigned)c->id);
  put8(&e, (unsigned)x->type | (x->write ? 4u : 0u));
  put8(&e, x->size);
  putv(&e, x->addr);
  putv(&e, rip_of(c));
  if (x->write) putv(&e, x->data);
  size_t hdr = e.n;
  uint64_t ones = mv__size_ones(x->size);
  mv_err err;
  int st = MV_ACCESS_CONTINUE;
  uint64_t answer = 0;
  if (r->diverged) goto stop;
  if (quiet(r)) {
    if (apply_pending(r, c, &err) < 0) goto stop;
  } else {
    r->in_handler++;
    answer = ones;
    st = mv__access_traps(c, x, &answer);
    r->in_handler--;
    if (r->diverged) goto stop;
  }
  const unsigned char *p;
  size_t n;
  bool more = mv__rec_peek(r, &p, &n);
  if (!more || n <= hdr || memcmp(p, e.b, hdr) != 0) {
    diverge(r, c, "vcpu:enter", more ? p : NULL, n, &e, NULL, &err);
    goto stop;
  }
  dec d = { p, n, hdr, false };
  unsigned outcome = get8(&d);
  uint64_t logged = x->write ? 0 : getv(&d);
  if (!quiet(r)) {   /* verify: the handler's answer must be the log's */
    unsigned got = (st == MV_ACCESS_STOP ? 1u : 0u) | (x->handler_failed ? 2u : 0u);
    if (got != outcome || (!x->write && answer != logged)) {
      put8(&e, got);
      if (!x->write) putv(&e, answer);
      diverge(r, c, "vcpu:enter", p, n, &e, NULL, &err);
      goto stop;
    }
  }
  mv__rec_consume(r);
  r->exits++;
  if (!x->write) *value = x->data = logged;
  if ((outcome & 2) && quiet(r)) r->failed = true;   /* enter says so: the error's text is not in the log */
  arm_kick(r, c);
  check_stop(r, c);
  return outcome & 1 ? MV_ACCESS_STOP : MV_ACCESS_CONTINUE;
stop:
  if (!x->write) *value = x->data = ones;
  return MV_ACCESS_STOP;
}

int mv__rec_drain(mv_guest *g, mv_vcpu *c, mv_exit *failed) {
  mv_rec *r = g->rec;
  if (quiet(r) && !r->finished) {   /* the callbacks' actions come from the log */
    g->nbells = 0;
    for (size_t i = 0; i < g->mem.count; i++)   /* and kvm's ioeventfd counts must not fire them later */
      if (g->mem.items[i].bell_fd >= 0) g->be->bell_take(g, &g->mem.items[i]);
    return MV_TRAP_DONE;
  }
  r->in_handler++;
  int rc = mv__bells_drain(g, c, failed);
  r->in_handler--;
  return rc;
}

bool mv__rec_no_timer(const mv_guest *g) { return g->rec && g->rec->replay && !g->rec->finished; }

int mv__rec_enter(mv_vcpu *c, mv_err *err) {
  mv_rec *r = c->guest->rec;
  if (r->finished) return 0;
  if (r->replay && r->diverged) return mv__fail(err, -EILSEQ, "vcpu:enter: %s: %s", r->path, r->div_msg);
  r->enter_depth++;
  if (r->replay && (r->flags & MV_REPLAY_DRIVE) && apply_records(r, c, true, err) < 0) {
    r->enter_depth--;
    return -EILSEQ;
  }
  if (r->replay) {
    const unsigned char *p;
    size_t n;
    if (mv__rec_peek(r, &p, &n) && (p[0] & 0x7f) == K_END) {   /* the guest would run unchecked, maybe forever */
      r->enter_depth--;
      return diverge(r, c, "vcpu:enter", p, n, NULL, "another cpu:enter after the log's last exit", err);
    }
    arm_kick(r, c), check_stop(r, c);
  }
  return 0;
}

int mv__rec_exit(mv_vcpu *c, mv_exit *x, int rc, mv_err *err) {
  mv_rec *r = c->guest->rec;
  if (r->enter_depth > 0) r->enter_depth--;
  c->stop_icount = 0;
  if (r->finished || rc < 0) return rc;
  if (r->replay && r->diverged) return mv__fail(err, -EILSEQ, "vcpu:enter: %s: %s", r->path, r->div_msg);
  if (r->forced && x->type == MV_EXIT_KICK) {   /* the stop time travel asked for: not in the log */
    r->forced = false;
    r->stop_at = 0;
    return 0;
  }
  mv_exit_type type = x->type == MV_EXIT_KICK && c->timed_out ? MV_EXIT_TIMEOUT : x->type;
  enc e;
  e.n = 0;
  put8(&e, K_RET);
  put8(&e, (unsigned)c->id);
  put8(&e, type);
  putv(&e, x->addr);
  mv_regs regs;
  putv(&e, c->guest->be->get_regs(c, &regs, NULL) == 0 ? regs.rip : 0);
  putv(&e, x->detail[0]);
  putv(&e, c->icount - r->icount0[c->id]);
  if (!r->replay) {
    mv__rec_append(r, &e);
    r->exits++;
    return 0;
  }
  if (quiet(r) && apply_pending(r, c, err) < 0) return -EILSEQ;
  const unsigned char *p;
  size_t n;
  bool more = mv__rec_peek(r, &p, &n);
  if (more && n >= 3 && (p[0] & 0x7f) == K_RET && p[2] == MV_EXIT_TIMEOUT && type == MV_EXIT_KICK)
    x->type = type = MV_EXIT_TIMEOUT, e.b[2] = MV_EXIT_TIMEOUT;   /* the replay's kick is the recorded timeout */
  bool async = type == MV_EXIT_KICK || type == MV_EXIT_TIMEOUT;
  size_t cmp = async && !c->guest->be->counts_instructions ? 3 : e.n;   /* where it stopped is not the log's */
  bool same_start = more && n >= cmp && memcmp(p, e.b, cmp) == 0;
  if (!same_start || (cmp == e.n && n != e.n)) return diverge(r, c, "vcpu:enter", more ? p : NULL, n, &e, NULL, err);
  if (cmp == 3 && (n != e.n || memcmp(p, e.b, e.n) != 0)) r->inexact++;
  mv__rec_consume(r);
  r->exits++;
  if (r->failed) {
    r->failed = false;
    return mv__fail(err, -ECANCELED, "vcpu:enter: %s: exit %" PRIu64 ": a handler failed here in the recorded run "
                    "(its error is not in the log: replay with verify to see it)", r->path, r->exits - 2);
  }
  return 0;
}

/* {====================================================== start and finish */

/* The instruction counts logged ones are relative to. */
static void mark_icounts(mv_rec *r) {
  for (int i = 0; i < r->g->nvcpus; i++)
    if (r->g->vcpus[i]) r->icount0[i] = r->g->vcpus[i]->icount;
}

static void attach_vmos(mv_rec *r, bool on) {
  for (size_t i = 0; i < r->g->nmaps; i++) {
    mv_vmo *v = r->g->maps[i].vmo;
    if (on && !v->rec) v->rec = r;
    else if (!on && v->rec == r) v->rec = NULL;
  }
}

static int rec_new(mv_guest *g, const char *path, bool replay, const char *what, mv_rec **out, mv_err *err) {
  if (g->closed) return mv__fail(err, -EBADF, "%s: guest is closed", what);
  if (g->rec)
    return mv__fail(err, -EBUSY, "%s: the guest is already %s %s", what, g->rec->replay ? "replaying" : "recording to",
                    g->rec->path);
  if (strlen(path) >= sizeof((mv_rec *)0)->path) return mv__fail(err, -ENAMETOOLONG, "%s: the path is too long", what);
  mv_rec *r = calloc(1, sizeof *r);
  unsigned char *blk = malloc(replay ? BLOCK_MAX : BLOCK_CAP);
  if (!r || !blk) {
    free(r);
    free(blk);
    return mv__fail(err, -ENOMEM, "%s: out of memory", what);
  }
  r->blk = blk;
  r->g = g;
  r->replay = replay;
  strcpy(r->path, path);
  r->f = fopen(path, replay ? "rb" : "wb");
  if (!r->f) {
    int e = errno;
    free(blk);
    free(r);
    return mv__fail(err, -e, "%s: %s: %s", what, path, strerror(e));
  }
  *out = r;
  return 0;
}

static void rec_drop(mv_rec *r) {
  if (r->f) fclose(r->f);
  free(r->blk);
  free(r);
}

int mv_record_start(mv_guest *g, const char *path, mv_rec **out, mv_err *err) {
  mv_rec *r;
  int rc = rec_new(g, path, false, "guest:record", &r, err);
  if (rc < 0) return rc;
  if ((rc = mv__rec_write_header(r, err)) < 0) {
    rec_drop(r);
    return rc;
  }
  g->rec = r;
  mv__guest_rehook(g);
  attach_vmos(r, true);
  mark_icounts(r);
  *out = r;
  return 0;
}

int mv_log_open(const char *path, mv_rec **out, mv_err *err) {
  mv_rec *r = calloc(1, sizeof *r);
  unsigned char *blk = malloc(BLOCK_MAX);
  if (!r || !blk || strlen(path) >= sizeof r->path) {
    free(r);
    free(blk);
    return mv__fail(err, -ENOMEM, "mv.log_records: out of memory or the path is too long");
  }
  r->blk = blk;
  r->replay = true;
  r->finished = true;   /* nothing to finish: no guest */
  strcpy(r->path, path);
  int rc;
  if (!(r->f = fopen(path, "rb"))) {
    rc = mv__fail(err, -errno, "mv.log_records: %s: %s", path, strerror(errno));
  } else if ((rc = mv__rec_check_header(r, err)) == 0 && (rc = mv__rec_scan(r, err)) == 0) {
    *out = r;
    return 0;
  }
  rec_drop(r);
  return rc;
}

int mv_replay_start(mv_guest *g, const char *path, unsigned flags, mv_rec **out, mv_err *err) {
  mv_rec *r;
  if (flags & ~(unsigned)(MV_REPLAY_VERIFY | MV_REPLAY_DRIVE))
    return mv__fail(err, -EINVAL, "guest:replay: unknown flags 0x%x", flags);
  if ((flags & MV_REPLAY_VERIFY) && (flags & MV_REPLAY_DRIVE))
    return mv__fail(err, -EINVAL, "guest:replay: verify and drive exclude each other (driving, no handler runs)");
  int rc = rec_new(g, path, true, "guest:replay", &r, err);
  if (rc < 0) return rc;
  r->flags = flags;
  if ((rc = mv__rec_check_header(r, err)) < 0 || (rc = mv__rec_scan(r, err)) < 0) {
    rec_drop(r);
    return rc;
  }
  r->bytes = HDR_SIZE;
  g->rec = r;
  mv__guest_rehook(g);
  attach_vmos(r, true);
  mark_icounts(r);
  *out = r;
  return 0;
}

static void detach(mv_rec *r) {
  if (!r->g) return;
  attach_vmos(r, false);
  r->g->rec = NULL;
  mv__guest_rehook(r->g);
  r->g = NULL;
}

static int finish_replay(mv_rec *r, mv_err *err) {
  if (r->diverged) return mv__fail(err, -EILSEQ, "guest:replay: %s: %s", r->path, r->div_msg);
  if (quiet(r) && apply_pending(r, NULL, err) < 0) return -EILSEQ;
  const unsigned char *p;
  size_t n;
  bool more = mv__rec_peek(r, &p, &n);
  if (!more || (p[0] & 0x7f) != K_END)
    return diverge(r, NULL, "guest:replay", more ? p : NULL, n, NULL, "the end of the run", err);
  dec d = { p, n, 1, false };
  getv(&d);
  r->expected_hash = get64(&d);
  mv__rec_consume(r);
  int rc = mv_guest_state_hash(r->g, &r->state_hash, err);
  if (rc < 0) return rc;
  if (r->state_hash != r->expected_hash) {
    char got[96];
    snprintf(got, sizeof got, "state hash 0x%016" PRIx64 " (registers or memory differ)", r->state_hash);
    return diverge(r, NULL, "guest:replay", p, n, NULL, got, err);
  }
  return 0;
}

static int finish_record(mv_rec *r, mv_err *err) {
  int rc = mv_guest_state_hash(r->g, &r->state_hash, err);
  if (rc < 0) return rc;
  enc e;
  e.n = 0;
  put8(&e, K_END);
  putv(&e, r->exits);
  put64(&e, r->state_hash);
  mv__rec_append(r, &e);
  mv__rec_flush(r);
  if (fflush(r->f) != 0 || r->io_error)
    return mv__fail(err, -EIO, "guest:record: %s: writing the log failed: %s", r->path, strerror(errno));
  return 0;
}

int mv_rec_finish(mv_rec *r, mv_err *err) {
  if (!r->finished) {
    mv_err e = { 0 };
    int rc = r->g ? (r->replay ? finish_replay(r, &e) : finish_record(r, &e))
                  : mv__fail(&e, -EBADF, "guest:record: the guest closed first");
    r->finished = true;
    r->finish_code = rc;
    snprintf(r->finish_msg, sizeof r->finish_msg, "%s", rc < 0 ? e.msg : "");
    if (r->f) fclose(r->f);
    r->f = NULL;
    detach(r);
  }
  if (r->finish_code < 0) return mv__fail(err, r->finish_code, "%s", r->finish_msg);
  return 0;
}

void mv__rec_guest_closing(mv_guest *g) {
  mv_err e;
  mv_rec_finish(g->rec, &e);
}

void mv_rec_summary_get(const mv_rec *r, mv_rec_summary *o) {
  *o = (mv_rec_summary){ .replay = r->replay, .finished = r->finished, .exits = r->exits, .records = r->records,
                         .bytes = r->bytes + (r->replay ? 0 : r->blen), .state_hash = r->state_hash,
                         .expected_hash = r->expected_hash, .inexact = r->inexact };
}

const char *mv_rec_path(const mv_rec *r) { return r->path; }

mv_rec *mv_guest_recorder(const mv_guest *g) { return g->rec; }

void mv_rec_pause(mv_rec *r, bool paused) { r->applying = paused; }

void mv_rec_stop_at(mv_rec *r, uint64_t n) {
  r->stop_at = n;
  r->forced = false;
}

bool mv_rec_at_end(mv_rec *r) {
  const unsigned char *p;
  size_t n;
  if (!r->replay || r->finished) return true;
  if (r->flags & MV_REPLAY_DRIVE) {   /* the script's actions after the last exit are the replayer's */
    mv_err e;
    if (apply_records(r, NULL, true, &e) < 0) return true;
  }
  return !mv__rec_peek(r, &p, &n) || (p[0] & 0x7f) == K_END;
}

void mv_rec_free(mv_rec *r) {
  if (!r) return;
  mv_err e;
  mv_rec_finish(r, &e);
  rec_drop(r);
}
