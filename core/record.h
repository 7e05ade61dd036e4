/*
 * record.h - the public C interface of record and replay (record.c owns the
 * log format, the streamed writer/reader, the recording hooks and the
 * replayer; record_hash.c the state hash).
 *
 * A recorder is attached to one guest.  Recording logs every exit, every
 * value fed to the guest, every injected interrupt and every host write to
 * guest memory or registers; replaying runs the guest again with the values
 * from the log and names the first difference.  The format is described at
 * the top of record.c and in README.md ("Record and replay").
 */
#ifndef MV_RECORD_H
#define MV_RECORD_H

#include "moonvisor.h"

typedef struct mv_rec mv_rec;

enum {
  MV_REPLAY_VERIFY = 1u << 0,   /* handlers run too; their answers and actions are compared with the log */
  MV_REPLAY_DRIVE = 1u << 1,    /* no script runs alongside: the replayer makes the script's recorded
                                   actions between exits too (time travel) */
};

/* Starts recording g into path (created or truncated).  The header holds
 * the backend, the host CPUID (kvm), the memory layout and hashes of memory
 * and registers as they are now. */
int mv_record_start(mv_guest *g, const char *path, mv_rec **out, mv_err *err);
/* Starts replaying path on g: the header is checked against g (backend,
 * host CPUID, layout, memory and registers) and every block's checksum is
 * verified (streamed) before anything runs. */
int mv_replay_start(mv_guest *g, const char *path, unsigned flags, mv_rec **out, mv_err *err);

typedef struct mv_rec_summary {
  bool replay;              /* a replayer, not a recorder */
  bool finished;            /* the end was written (recorder) or compared (replayer) */
  uint64_t exits;           /* exits recorded or replayed */
  uint64_t records;         /* every record */
  uint64_t bytes;           /* file size so far (recorder) or bytes read (replayer) */
  uint64_t state_hash;      /* at the end: registers of every VCPU + all guest memory */
  uint64_t expected_hash;   /* replayer: the recording's state hash */
  uint64_t inexact;         /* replayer: asynchronous exits not placed at the recorded instruction */
} mv_rec_summary;

/* Ends the recording (writes the end record with the state hash) or the
 * replay (checks that the log is used up and the state hashes agree: a
 * difference is a divergence, -EILSEQ).  Idempotent; closing the guest
 * finishes its recorder too. */
int mv_rec_finish(mv_rec *r, mv_err *err);
void mv_rec_summary_get(const mv_rec *r, mv_rec_summary *out);
const char *mv_rec_path(const mv_rec *r);
/* Finishes (ignoring errors), detaches from the guest and frees. */
void mv_rec_free(mv_rec *r);

/* The first difference a replay met. */
typedef struct mv_divergence {
  uint64_t exit;            /* exit index (exits counted from 0) */
  int vcpu;                 /* -1 when not a VCPU's */
  char expected[192];       /* the log's record, described */
  char got[192];            /* what the run did */
  bool has_regs;
  mv_regs regs;             /* of the VCPU at the divergence */
} mv_divergence;
/* NULL while the replay agrees. */
const mv_divergence *mv_rec_divergence(const mv_rec *r);
/* The recorder attached to g (recording or replaying), or NULL. */
mv_rec *mv_guest_recorder(const mv_guest *g);

/* A log read on its own, with no guest (an exit trace, a dump): checked as
 * mv_replay_start checks it but for the fields that describe the guest.
 * mv_log_next describes the next record (as divergence reports do) and says
 * whether it is an exit; returns 1, 2 for the end record, 0 after it.
 * mv_rec_summary_get's exits counts the exits read; mv_rec_free frees. */
int mv_log_open(const char *path, mv_rec **out, mv_err *err);
int mv_log_next(mv_rec *r, char *text, size_t cap, bool *is_exit);

/* {====================================================== time travel (replayers) */

/* Where a replay is in its log, to come back to with a snapshot taken there. */
typedef struct mv_rec_pos {
  uint64_t block;           /* file offset of the block being read (0: none read yet) */
  uint64_t at;              /* cursor in that block */
  uint64_t exits, records, bytes;
  uint64_t icount[64];      /* each VCPU's instructions since the log began (MV_MAX_VCPUS) */
} mv_rec_pos;
void mv_rec_tell(const mv_rec *r, mv_rec_pos *out);
/* Goes back (or forward) to pos; the guest must be put back to match it
 * (mv_guest_restore of a snapshot taken at pos) with the replay paused. */
int mv_rec_seek(mv_rec *r, const mv_rec_pos *pos, mv_err *err);
/* Paused, the replay neither logs nor compares host actions (for restores). */
void mv_rec_pause(mv_rec *r, bool paused);
/* The run stops (a kick exit) once the replay has reached exit index n (0: never). */
void mv_rec_stop_at(mv_rec *r, uint64_t n);
/* True when every exit of the log was replayed (its end record is next). */
bool mv_rec_at_end(mv_rec *r);

/* Registers (regs and special registers) of every VCPU and every mapping's
 * place and content, hashed; what both runs print at their end. */
int mv_guest_state_hash(mv_guest *g, uint64_t *out, mv_err *err);

#endif
