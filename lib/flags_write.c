/*
 * flags_write.c - writes of flags and stages (foundation/flags.h): the
 * events they emit, the history records they write, the journal, the
 * flags lock and the public writes.  The argument for the lock and the
 * journal (a writer's death) is at the top of flags.c.  Calls flags.c
 * (lib/flags_int.h) and telemetry.c (the events).
 */
#include "lib/flags_int.h"
#include "lib/telemetry.h"

#include <foundation/flags.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define FLAGS_LOCK_WAIT_NS 5000000000ll /* a live holder: give up after 5 s */

/* The process-memory flags' lock (s == NULL: a thread cannot die alone). */
static pthread_mutex_t proc_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- events ----------------------------------------------------------------- */

static _Atomic(fdn__flags_hook_fn) hook_fn;
static void *_Atomic hook_arg;

void fdn__flags_set_hook(fdn__flags_hook_fn fn, void *arg)
{
	atomic_store(&hook_arg, arg);
	atomic_store(&hook_fn, fn);
}

/* The events `foundation.flag.changed` {flag, from, to, reason} (one per
 * flag changed), `foundation.stage.changed` {from, to, reason} (one per
 * stage change, emergency rollbacks included) and, after an emergency
 * rollback's stage change, `foundation.stage.alert` {alert_type
 * "emergency_rollback", reason, from, to}; after the change is applied,
 * outside the lock; values are 0..100 (-1: the flag was created), stages
 * 0..4.  Migration telemetry -- the stage events, the alert, and the
 * changes of built-in flags -- is emitted only if monitored
 * (enable_migration_monitoring on before or after the change); changes of
 * user flags always.  The in-process hook (tests) sees every change. */
static void emit_change(fdn_segment *s, const struct fdn_flag_change *c, bool monitored)
{
	fdn__flags_hook_fn fn = atomic_load(&hook_fn);
	if (fn)
		fn(atomic_load(&hook_arg), c);
	bool builtin = c->kind != FDN_CHANGE_FLAG || fdn__fl_builtin_id(c->flag) >= 0;
	if (builtin && !monitored)
		return;
	enum fdn__ev id = c->kind == FDN_CHANGE_STAGE   ? FDN__EV_STAGE_CHANGED
			  : c->kind == FDN_CHANGE_ALERT ? FDN__EV_STAGE_ALERT
							: FDN__EV_FLAG_CHANGED;
	if (!fdn__emit_enabled(s, id))
		return;
	struct fdn_measurement m[2] = {{"from", c->from}, {"to", c->to}};
	struct fdn_attr a[2] = {{.name = "reason", .type = FDN_ATTR_STRING, .v.s = c->reason},
				{.name = c->kind == FDN_CHANGE_ALERT ? "alert_type" : "flag",
				 .type = FDN_ATTR_STRING,
				 .v.s = c->flag}};
	fdn__emit_id(s, id, m, 2, a, c->kind == FDN_CHANGE_STAGE ? 1 : 2);
}

static void rec_write(struct fview *v, uint64_t k, unsigned kind, const char *flag, int from,
		      int to, const struct fdn_shm_flags_journal *j)
{
	struct fdn_shm_flag_rec *rec = &v->r->history[k % FDN_FLAG_HISTORY_LEN];
	atomic_store_explicit(&rec->seq, 2 * k + 1, memory_order_relaxed);
	/* The odd seq is visible before any field changes (pairs with the
	 * reader's acquire fence before its second seq load). */
	atomic_thread_fence(memory_order_release);
	rec->time_ns = j->time_ns;
	rec->pid = j->pid;
	rec->kind = (uint16_t)kind;
	rec->reserved0 = 0;
	rec->from = from;
	rec->to = to;
	memset(rec->flag, 0, sizeof(rec->flag));
	memcpy(rec->flag, flag, strnlen(flag, FDN_FLAG_NAME_MAX));
	memcpy(rec->reason, j->reason, sizeof(rec->reason));
	rec->reason[FDN_FLAG_REASON_MAX] = 0;
	memset(rec->pad, 0, sizeof(rec->pad));
	atomic_store_explicit(&rec->seq, 2 * k + 2, memory_order_release);
}

/* Copy record number k if it is complete and still k. */

/* ---- the journal -------------------------------------------------------------- */

/* The name a journal op refers to. */
static void op_name(const struct fview *v, const struct fdn_shm_flag_op *op,
		    char out[FDN_FLAG_NAME_BYTES])
{
	if (op->flag < FDN_FLAG_SLOTS)
		fdn__fl_slot_name(v, op->flag, out);
	else
		out[0] = 0;
}

/* Apply journal j (idempotent: see the top of the file).  Lock held. */
static void journal_apply(struct fview *v, const struct fdn_shm_flags_journal *j)
{
	uint32_t nops = j->nops < FDN_FLAG_SLOTS ? j->nops : FDN_FLAG_SLOTS;
	for (uint32_t k = 0; k < nops; k++) {
		const struct fdn_shm_flag_op *op = &j->ops[k];
		if (op->flag >= FDN_FLAG_SLOTS)
			continue;
		struct fdn_shm_flag *f = &v->r->flags[op->flag];
		if (op->flag >= FDN_FLAGS_BUILTIN)
			atomic_store_explicit(&f->value, (uint32_t)op->to, memory_order_release);
		atomic_store_explicit(&f->changed_ns, j->time_ns, memory_order_relaxed);
		/* A created flag becomes visible: its slot was written before
		 * the journal was published. */
		if (op->from == FDN_FLAGREC_CREATED &&
		    atomic_load_explicit(&v->h->nflags, memory_order_relaxed) <= op->flag)
			atomic_store_explicit(&v->h->nflags, op->flag + 1, memory_order_release);
	}
	if (j->has_builtin)
		atomic_store_explicit(&v->h->builtin, j->builtin, memory_order_release);
	for (uint32_t k = 0; k < nops; k++) {
		char name[FDN_FLAG_NAME_BYTES];
		op_name(v, &j->ops[k], name);
		rec_write(v, j->hist_base + k, FDN_FLAGREC_FLAG, name, j->ops[k].from, j->ops[k].to,
			  j);
	}
	uint64_t end = j->hist_base + nops;
	if (j->stage_to >= 0)
		rec_write(v, end++, FDN_FLAGREC_STAGE, "", j->stage_from, j->stage_to, j);
	if (j->stage_to >= 0 && j->alert)
		rec_write(v, end++, FDN_FLAGREC_ALERT, ALERT_EMERGENCY, j->stage_from, j->stage_to,
			  j);
	atomic_store_explicit(&v->h->hist_total, end, memory_order_release);
}

/* Was migration monitoring on before or after journal j? */
static bool journal_monitored(const struct fdn_shm_flags_journal *j, uint64_t now_word)
{
	unsigned id = FDN__FLAG_ENABLE_MIGRATION_MONITORING;
	uint64_t after = j->has_builtin ? j->builtin : now_word;
	if (FDN_BUILTIN_VALUE(after, id) >= FDN_FLAG_ON)
		return true;
	uint32_t nops = j->nops < FDN_FLAG_SLOTS ? j->nops : FDN_FLAG_SLOTS;
	for (uint32_t k = 0; k < nops; k++)
		if (j->ops[k].flag == id)
			return j->ops[k].from >= FDN_FLAG_ON;
	return false;
}

/* Emit the events of an applied journal (outside the lock). */
static void journal_emit(const struct fview *v, const struct fdn_shm_flags_journal *j)
{
	uint32_t nops = j->nops < FDN_FLAG_SLOTS ? j->nops : FDN_FLAG_SLOTS;
	bool mon = journal_monitored(j, atomic_load_explicit(&v->h->builtin, memory_order_acquire));
	struct fdn_flag_change c = {.time_ns = j->time_ns, .pid = (pid_t)j->pid};
	memcpy(c.reason, j->reason, sizeof(c.reason));
	c.reason[FDN_FLAG_REASON_MAX] = 0;
	for (uint32_t k = 0; k < nops; k++) {
		c.number = j->hist_base + k;
		c.kind = FDN_CHANGE_FLAG;
		op_name(v, &j->ops[k], c.flag);
		c.from = j->ops[k].from;
		c.to = j->ops[k].to;
		emit_change(v->s, &c, mon);
	}
	if (j->stage_to >= 0) {
		c.number = j->hist_base + nops;
		c.kind = FDN_CHANGE_STAGE;
		c.flag[0] = 0;
		c.from = j->stage_from;
		c.to = j->stage_to;
		emit_change(v->s, &c, mon);
		if (j->alert) {
			c.number++;
			c.kind = FDN_CHANGE_ALERT;
			snprintf(c.flag, sizeof(c.flag), "%s", ALERT_EMERGENCY);
			emit_change(v->s, &c, mon);
		}
	}
}

/* ---- the lock ------------------------------------------------------------------- */

/* One write: the lock, a plan, and a journal recovered from a dead holder. */
struct wctx {
	struct fview v;
	bool recovered;
	struct fdn_shm_flags_journal rec; /* the dead holder's change, re-applied */
	struct fdn_shm_flags_journal plan;
};

/* Does the lock word name a live process?  Anything but a LIVE claim
 * word (damage) names nobody. */
bool fdn__fl_holder_alive(uint64_t w)
{
	return FDN_PROC_STATE(w) == FDN_PROC_LIVE &&
	       fdn__pid_alive((pid_t)FDN_PROC_PID(w), FDN_PROC_IDENT40(w));
}

static int lock_take(struct wctx *c)
{
	c->recovered = false;
	if (!c->v.s) {
		pthread_mutex_lock(&proc_lock);
		return 0;
	}
	uint64_t me = c->v.s->proc_word;
	int64_t deadline = (int64_t)fdn__mono_ns() + FLAGS_LOCK_WAIT_NS;
	for (uint32_t i = 1;; i++) {
		uint64_t cur = 0;
		/* Acquire: pairs with the previous holder's release of 0. */
		if (atomic_compare_exchange_strong_explicit(
			&c->v.h->lock, &cur, me, memory_order_acquire, memory_order_relaxed))
			break;
		if (i % 32 != 0) {
			sched_yield();
			continue;
		}
		if (!fdn__fl_holder_alive(cur)) {
			/* Take a dead holder's lock: from that word only, so of
			 * two rescuers one wins and the other sees us. */
			if (atomic_compare_exchange_strong_explicit(&c->v.h->lock, &cur, me,
								    memory_order_acquire,
								    memory_order_relaxed))
				break;
			continue;
		}
		if ((int64_t)fdn__mono_ns() > deadline)
			return FDN_ETIMEDOUT;
		struct timespec ts = {0, 100000};
		nanosleep(&ts, NULL);
	}
	/* A dead holder's published change: apply it again, retire it.
	 * Acquire: its journal's plain stores precede its release of
	 * PENDING. */
	struct fdn_shm_flags_journal *j = &c->v.r->journal;
	if (atomic_load_explicit(&j->state, memory_order_acquire) == FDN_JOURNAL_PENDING) {
		journal_apply(&c->v, j);
		memcpy(&c->rec, j, sizeof(c->rec));
		c->recovered = true;
		atomic_store_explicit(&j->state, FDN_JOURNAL_IDLE, memory_order_release);
	}
	return 0;
}

static void lock_release(struct wctx *c)
{
	if (!c->v.s) {
		pthread_mutex_unlock(&proc_lock);
		return;
	}
	/* Release: everything written under the lock precedes the next
	 * holder's acquire. */
	atomic_store_explicit(&c->v.h->lock, 0, memory_order_release);
}

/* Start a write: the view, the lock, an empty plan. */
static int write_begin(fdn_segment *s, struct wctx *c, const char *reason)
{
	int r = fdn__fl_view(s, V_WRITE, &c->v);
	if (r)
		return r;
	if ((r = lock_take(c)))
		return r;
	memset(&c->plan, 0, offsetof(struct fdn_shm_flags_journal, ops));
	c->plan.hist_base = atomic_load_explicit(&c->v.h->hist_total, memory_order_relaxed);
	c->plan.time_ns = fdn__real_ns();
	c->plan.pid = (uint32_t)getpid();
	c->plan.stage_to = -1;
	snprintf(c->plan.reason, sizeof(c->plan.reason), "%s", reason);
	return 0;
}

static void plan_op(struct wctx *c, uint32_t flag, int from, int to)
{
	if (c->plan.nops < FDN_FLAG_SLOTS)
		c->plan.ops[c->plan.nops++] = (struct fdn_shm_flag_op){flag, from, to, 0};
}

/* Publish the plan in the journal, apply it, retire it, unlock, emit.
 * commit = false: nothing to change (just unlock, emit a recovery's). */
static int write_end(struct wctx *c, bool commit)
{
	if (commit && (c->plan.nops > 0 || c->plan.stage_to >= 0)) {
		struct fdn_shm_flags_journal *j = &c->v.r->journal;
		/* Written while IDLE: a holder killed here changed nothing. */
		memcpy((char *)j + sizeof(j->state), (const char *)&c->plan + sizeof(j->state),
		       offsetof(struct fdn_shm_flags_journal, ops) - sizeof(j->state) +
			   c->plan.nops * sizeof(struct fdn_shm_flag_op));
		atomic_store_explicit(&j->state, FDN_JOURNAL_PENDING, memory_order_release);
		journal_apply(&c->v, j);
		atomic_store_explicit(&j->state, FDN_JOURNAL_IDLE, memory_order_release);
	} else {
		commit = false;
	}
	lock_release(c);
	if (c->recovered)
		journal_emit(&c->v, &c->rec);
	if (commit)
		journal_emit(&c->v, &c->plan);
	return 0;
}

/* ---- writes ------------------------------------------------------------------------ */

/* A set's or create's arguments: FDN_EINVAL (name), FDN_EPERCENT (value). */
static int write_args(const char *name, int value)
{
	if (!fdn__fl_name_ok(name))
		return FDN_EINVAL;
	if (value < 0 || value > FDN_FLAG_ON)
		return FDN_EPERCENT;
	return 0;
}

int fdn_flag_set(fdn_segment *s, const char *name, int value)
{
	struct wctx c;
	int r = write_args(name, value);
	if (r == 0)
		r = write_begin(s, &c, "set");
	if (r)
		return r;
	int i = fdn__fl_find(&c.v, name);
	if (i < 0) {
		write_end(&c, false);
		return FDN_EUNKFLAG;
	}
	uint64_t w = atomic_load_explicit(&c.v.h->builtin, memory_order_relaxed);
	int from = fdn__fl_value_at(&c.v, w, (uint32_t)i);
	if (from != value) {
		plan_op(&c, (uint32_t)i, from, value);
		if (i < (int)FDN_FLAGS_BUILTIN) {
			c.plan.has_builtin = 1;
			c.plan.builtin = fdn__fl_word_set(w, (unsigned)i, (unsigned)value);
		}
	}
	return write_end(&c, true);
}

int fdn_flag_create(fdn_segment *s, const char *name, int value)
{
	struct wctx c;
	int r = write_args(name, value);
	if (r == 0)
		r = write_begin(s, &c, "create");
	if (r)
		return r;
	if (fdn__fl_find(&c.v, name) >= 0) {
		write_end(&c, false);
		return FDN_EEXISTS;
	}
	uint32_t n = fdn__fl_nflags(&c.v);
	if (n < FDN_FLAGS_BUILTIN || n >= FDN_FLAG_SLOTS) {
		write_end(&c, false);
		return n < FDN_FLAGS_BUILTIN ? FDN_ECORRUPT : FDN_ENOSPACE;
	}
	/* The slot, beyond nflags: invisible until the journal publishes it. */
	struct fdn_shm_flag *f = &c.v.r->flags[n];
	atomic_store_explicit(&f->value, 0, memory_order_relaxed);
	atomic_store_explicit(&f->changed_ns, 0, memory_order_relaxed);
	f->dflt = (uint32_t)value;
	memset(f->name, 0, sizeof(f->name));
	memcpy(f->name, name, strlen(name));
	plan_op(&c, n, FDN_FLAGREC_CREATED, value);
	return write_end(&c, true);
}

int fdn_flags_reset(fdn_segment *s)
{
	struct wctx c;
	int r = write_begin(s, &c, "reset");
	if (r)
		return r;
	uint64_t w = atomic_load_explicit(&c.v.h->builtin, memory_order_relaxed);
	uint64_t d = c.v.h->builtin_default;
	if (FDN_BUILTIN_RESERVED(d) || FDN_BUILTIN_STAGE(d) > FDN_STAGE_LAST) {
		write_end(&c, false);
		return FDN_ECORRUPT;
	}
	uint32_t n = fdn__fl_nflags(&c.v);
	for (uint32_t i = 0; i < n; i++) {
		int from = fdn__fl_value_at(&c.v, w, i);
		int to = i < FDN_FLAGS_BUILTIN ? fdn__fl_clamp_value(FDN_BUILTIN_VALUE(d, i))
					       : fdn__fl_clamp_value(c.v.r->flags[i].dflt);
		if (from != to)
			plan_op(&c, i, from, to);
	}
	if (FDN_BUILTIN_STAGE(w) != FDN_BUILTIN_STAGE(d)) {
		c.plan.stage_from = (int)FDN_BUILTIN_STAGE(w);
		c.plan.stage_to = (int)FDN_BUILTIN_STAGE(d);
	}
	if (w != d) {
		c.plan.has_builtin = 1;
		c.plan.builtin = d;
	}
	return write_end(&c, true);
}

enum stage_move { MIGRATE, ROLLBACK, EMERGENCY };

static int stage_change(fdn_segment *s, enum stage_move how, int n, const char *reason)
{
	static const char *const dflt[] = {"migrate", "rollback", "emergency"};
	if (reason && strlen(reason) > FDN_FLAG_REASON_MAX)
		return FDN_ETOOBIG;
	if (n < 0 || n > (int)FDN_STAGE_LAST)
		return FDN_ESTAGE;
	struct wctx c;
	int r = write_begin(s, &c, reason && *reason ? reason : dflt[how]);
	if (r)
		return r;
	uint64_t w = atomic_load_explicit(&c.v.h->builtin, memory_order_relaxed);
	int cur = (int)FDN_BUILTIN_STAGE(w);
	bool ok = how == MIGRATE ? n == cur + 1 : how == ROLLBACK ? n < cur : true;
	if (!ok) {
		write_end(&c, false);
		return FDN_ESTAGE;
	}
	uint64_t nw = fdn__fl_word_of_profile((unsigned)n);
	for (uint32_t i = 0; i < FDN_FLAGS_BUILTIN; i++) {
		int from = fdn__fl_clamp_value(FDN_BUILTIN_VALUE(w, i));
		int to = (int)FDN_BUILTIN_VALUE(nw, i);
		if (from != to)
			plan_op(&c, i, from, to);
	}
	c.plan.has_builtin = 1;
	c.plan.builtin = nw;
	c.plan.stage_from = cur;
	c.plan.stage_to = n;
	c.plan.alert = how == EMERGENCY;
	return write_end(&c, true);
}

int fdn_stage_migrate(fdn_segment *s, int n)
{
	return stage_change(s, MIGRATE, n, NULL);
}

int fdn_stage_rollback(fdn_segment *s, int n, const char *reason)
{
	return stage_change(s, ROLLBACK, n, reason);
}

int fdn_stage_emergency_rollback(fdn_segment *s, const char *reason)
{
	return stage_change(s, EMERGENCY, 0, reason);
}
