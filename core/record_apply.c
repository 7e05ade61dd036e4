/*
 * record_apply.c - the replayer's own actions: naming a divergence (what
 * the log expected, what the run did, the VCPU's registers) and applying
 * the records a replay makes itself instead of the code that made them: a
 * trap handler's (which does not run), or, driving a time-travel session,
 * the script's too.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "record_int.h"

static mv_vcpu *vcpu_of(mv_guest *g, unsigned id) {
  return id < (unsigned)g->nvcpus && g->vcpus[id] && !g->vcpus[id]->destroyed ? g->vcpus[id] : NULL;
}

/* {====================================================== divergences */

int mv__rec_diverge(mv_rec *r, mv_vcpu *c, const char *what, const unsigned char *exp, size_t en, const enc *got,
                    const char *got_text, mv_err *err) {
  if (!r->diverged) {
    r->diverged = true;
    mv_divergence *d = &r->div;
    d->exit = r->exits;
    d->vcpu = c ? c->id : -1;
    if (exp) mv__rec_describe(exp, en, d->expected, sizeof d->expected);
    else snprintf(d->expected, sizeof d->expected, "nothing more (the log ends)");
    if (got_text) snprintf(d->got, sizeof d->got, "%s", got_text);
    else mv__rec_describe(got->b, got->n, d->got, sizeof d->got);
    d->has_regs = c && !c->destroyed && c->guest->be->get_regs(c, &d->regs, NULL) == 0;
    snprintf(r->div_msg, sizeof r->div_msg, "replay diverged at exit %" PRIu64 ": expected %s; got %s", d->exit,
             d->expected, d->got);
  }
  return mv__fail(err, -EILSEQ, "%s: %s: %s", what, r->path, r->div_msg);
}

const mv_divergence *mv_rec_divergence(const mv_rec *r) { return r->diverged ? &r->div : NULL; }

/* {====================================================== replaying what handlers did */

/* A record the replayer makes itself: a handler's, or, driving, any host action. */
static bool to_apply(const mv_rec *r, unsigned k) {
  if (k & H_FLAG) return true;
  k &= 0x7f;
  return (r->flags & MV_REPLAY_DRIVE) && k != K_ACCESS && k != K_RET && k != K_DELIVER && k != K_END;
}

/* Applies the handler records at the head of the log (not verifying);
 * script_only: only the script's (driving, before a run: the handler
 * records after them belong to the run's first exit). */
int mv__rec_apply(mv_rec *r, mv_vcpu *at, bool script_only, mv_err *err) {
  const unsigned char *p;
  size_t n;
  mv_guest *g = r->g;
  while (mv__rec_peek(r, &p, &n) && to_apply(r, p[0]) && !(script_only && (p[0] & H_FLAG))) {
    dec d = { p, n, 1, false };
    unsigned kind = p[0] & 0x7f;
    mv_vcpu *c = kind == K_HOSTW || kind == K_IRQLINE || kind == K_MAP || kind == K_UNMAP ? NULL : vcpu_of(g, get8(&d));
    int rc = 0;
    r->applying = true;
    switch (kind) {
    case K_HOSTW: {
      uint64_t gpa = getv(&d), len = getv(&d);
      get64(&d);
      if (!d.bad && len == n - d.i) rc = mv_guest_write(g, gpa, p + d.i, len, err);
      else d.bad = true;
      break;
    }
    case K_REGS: {
      uint64_t v[18];
      for (int i = 0; i < 18; i++) v[i] = getv(&d);
      mv_regs regs = { v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9],
                       v[10], v[11], v[12], v[13], v[14], v[15], v[16], v[17] };
      if (c && !d.bad) rc = mv_vcpu_write_state(c, &regs, err);
      break;
    }
    case K_SREGS: {
      mv_sregs s;
      if (c && mv__rec_get_sregs(p + d.i, n - d.i, &s)) rc = mv_vcpu_write_sregs(c, &s, err);
      else d.bad = true;
      break;
    }
    case K_MSR: {
      uint64_t idx = getv(&d), v = getv(&d);
      if (c && !d.bad) rc = mv_vcpu_write_msr(c, (uint32_t)idx, v, err);
      break;
    }
    case K_FPU: {
      mv_fpu f;
      if (c && n - d.i == 345) {
        const unsigned char *q = p + d.i;
        memcpy(f.st, q, 80), memcpy(&f.fcw, q + 80, 2), memcpy(&f.fsw, q + 82, 2), f.ftw = q[84];
        memcpy(&f.mxcsr, q + 85, 4), memcpy(f.xmm, q + 89, 256);
        rc = mv_vcpu_write_fpu(c, &f, err);
      } else d.bad = true;
      break;
    }
    case K_CPUID: {
      uint64_t leaf = getv(&d), sub = getv(&d);
      uint32_t regs[4];
      for (int i = 0; i < 4; i++) regs[i] = (uint32_t)getv(&d);
      if (c && !d.bad) rc = mv_vcpu_set_cpuid(c, (uint32_t)leaf, (uint32_t)sub, regs, err);
      break;
    }
    case K_IRQ: {
      unsigned v = get8(&d);
      if (c && !d.bad) rc = mv_vcpu_interrupt(c, v, err);
      break;
    }
    case K_IRQLINE: {
      uint64_t line = getv(&d);
      unsigned level = get8(&d);
      if (!d.bad) rc = mv_guest_irq(g, (uint32_t)line, (int)level, err);
      break;
    }
    default:   /* maps: a handler's VMO is not in the log */
      r->applying = false;
      return mv__rec_diverge(r, at, "vcpu:enter", p, n, NULL,
                             "a handler's map or unmap, which only replays with verify = true",
                     err);
    }
    r->applying = false;
    if (d.bad || (kind != K_HOSTW && kind != K_IRQLINE && !c))
      return mv__rec_diverge(r, at, "vcpu:enter", p, n, NULL,
                             "a record this guest cannot apply (no such VCPU or bad fields)",
                     err);
    if (rc < 0) {
      char why[192];
      snprintf(why, sizeof why, "applying it failed: %.150s", err ? err->msg : "");
      return mv__rec_diverge(r, at, "vcpu:enter", p, n, NULL, why, err);
    }
    mv__rec_consume(r);
  }
  return 0;
}

