/*
 * flags.c - feature flags and migration stages (foundation/flags.h), in the
 * segment's flags region and header part (layout.h gives every byte), or
 * in this process's memory when there is no segment.
 *
 * Reads.  The seven built-in flags and the stage are one 64-bit word
 * (flags_hdr.builtin).  A reader loads it once (acquire, pairing with the
 * writer's release store) and so sees one consistent profile: a stage
 * change, a rollback, an emergency rollback are each one store.  A user
 * flag is found by name in the slot table (bounded by nflags, loaded with
 * acquire: a slot is written in full before nflags covers it) and read
 * with one acquire load of its value word.
 *
 * Writes are serialised by the flags lock (flags_hdr.lock), whose value is
 * the holder's process claim word.  Linearisation: a change takes effect at
 * the store of the built-in word (built-in flags, stages) or of the slot's
 * value word (user flags); its history records follow, and hist_total's
 * release store publishes them.  Two stage changes from two processes at
 * once: each validates the transition against the stage it reads while
 * holding the lock, so exactly one of two concurrent `migrate 2` from stage
 * 1 succeeds and the other gets FDN_ESTAGE; a rollback and a migrate are
 * ordered by the lock and each sees the other's result.
 *
 * Death of a writer.  A change is written to the journal first and
 * published there (state PENDING, release) before anything visible
 * changes; applying it stores absolute values at fixed places (values, the
 * word, history record k at history[k % 64] with seq 2k+2, hist_total), so
 * applying it twice is the same as once.  A writer that finds the lock held
 * asks the kernel whether the holder lives (pidfd + identity, never a bare
 * pid); if not, it takes the lock over by CAS from that exact word (two
 * rescuers cannot both win), applies a PENDING journal again and retires
 * it.  A holder killed before publishing its journal changed nothing; one
 * killed after retiring it left only the lock, which is taken over.  No
 * writer waits for a dead process; a live holder keeps the lock for a few
 * microseconds (no system call, no allocation inside), and a waiter gives
 * up after FLAGS_LOCK_WAIT_NS with FDN_ETIMEDOUT rather than wait for a
 * stopped one for ever.
 *
 * Process memory (s == NULL).  The same structures in static storage, the
 * lock a process mutex (a thread cannot die alone); filled from
 * $FOUNDATION_FLAGS by a constructor before main, so fdn__flag_on(NULL)
 * needs no initialisation check.
 */
#include "lib/internal.h"
#include "lib/telemetry.h"

#include <foundation/flags.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

static_assert(FDN_FLAG_SLOTS == FDN_FLAGS_MAX, "public and shared flag capacity");
static_assert(FDN_FLAG_NAME_BYTES == FDN_FLAG_NAME_MAX + 1, "flag name length");
static_assert(FDN_FLAG_REASON_BYTES == FDN_FLAG_REASON_MAX + 1, "reason length");
static_assert(FDN_FLAG_HISTORY_LEN == FDN_FLAGS_HISTORY, "history length");
static_assert(FDN_STAGE_LAST == FDN_STAGE_MAX, "last stage");
static_assert(FDN_FLAG_PCT_MAX == FDN_FLAG_ON, "on is 100 %");
static_assert(FDN_FLAGREC_CREATED == FDN_FLAG_CREATED, "created marker");

#define FLAGS_LOCK_WAIT_NS 5000000000ll /* a live holder: give up after 5 s */

static const char *const builtin_names[FDN_FLAGS_BUILTIN] = {
    [FDN__FLAG_USE_SHM_REGISTRY] = "use_shm_registry",
    [FDN__FLAG_USE_SHM_ERROR_CONTEXT] = "use_shm_error_context",
    [FDN__FLAG_USE_SHM_TELEMETRY] = "use_shm_telemetry",
    [FDN__FLAG_USE_SHM_SPANS] = "use_shm_spans",
    [FDN__FLAG_USE_SHM_SAMPLED_EVENTS] = "use_shm_sampled_events",
    [FDN__FLAG_ENFORCE_NO_LOCAL_STATE] = "enforce_no_local_state",
    [FDN__FLAG_ENABLE_MIGRATION_MONITORING] = "enable_migration_monitoring",
};

/* Stage profiles: bit i set = built-in flag i on (every other one off). */
#define P(id) (1u << FDN__FLAG_##id)
static const unsigned profiles[FDN_STAGE_LAST + 1] = {
    0,
    P(USE_SHM_REGISTRY) | P(ENABLE_MIGRATION_MONITORING),
    P(USE_SHM_REGISTRY) | P(ENABLE_MIGRATION_MONITORING) | P(USE_SHM_ERROR_CONTEXT),
    P(USE_SHM_REGISTRY) | P(ENABLE_MIGRATION_MONITORING) | P(USE_SHM_ERROR_CONTEXT) |
	P(USE_SHM_TELEMETRY) | P(USE_SHM_SPANS) | P(USE_SHM_SAMPLED_EVENTS),
    P(USE_SHM_REGISTRY) | P(ENABLE_MIGRATION_MONITORING) | P(USE_SHM_ERROR_CONTEXT) |
	P(USE_SHM_TELEMETRY) | P(USE_SHM_SPANS) | P(USE_SHM_SAMPLED_EVENTS) |
	P(ENFORCE_NO_LOCAL_STATE),
};
#undef P
static_assert(FDN_FLAGS_BUILTIN_COUNT == FDN_FLAGS_BUILTIN, "built-in flags");

/* The stage catalogue (fdn_stage_info): name, description, risk. */
static const struct {
	const char *name, *description, *risk, *risk_note;
} stage_catalogue[FDN_STAGE_LAST + 1] = {
    {"local", "Every service keeps its state in the process.", "none",
     "Nothing is shared; no process sees another's state."},
    {"registry",
     "The registry moves into the segment, visible to every process; migration monitoring "
     "starts.",
     "low", "Only the registry changes backend; entries registered locally before stay local."},
    {"error_context",
     "Error context joins the segment, so other processes and the graveyard show it.", "low",
     "Contexts are per thread; a flip leaves the old backend's context behind."},
    {"shared",
     "Telemetry, spans and sampled events join the segment: one ring, shared samplers, spans "
     "visible to every process.",
     "medium",
     "Samplers, batches and rate limits become shared decisions; event volume moves "
     "into the ring."},
    {"enforced", "Everything shared, and any call that would use a local backend is refused.",
     "high", "A service flag turned off by hand makes its calls fail with FDN_EENFORCED."},
};

#define DEFAULT_STAGE   3u                   /* the built-in defaults: stage 3's profile */
#define ALERT_EMERGENCY "emergency_rollback" /* the alert type of an emergency */

/* ---- the built-in word -------------------------------------------------- */

static uint64_t word_set(uint64_t w, unsigned i, unsigned v)
{
	uint64_t mask = 0x7Full << (FDN_BUILTIN_BITS * i);
	return (w & ~mask) | ((uint64_t)v << (FDN_BUILTIN_BITS * i));
}

static uint64_t word_stage(uint64_t w, unsigned stage)
{
	return (w & ~(0x7ull << FDN_BUILTIN_STAGE_SHIFT)) |
	       ((uint64_t)stage << FDN_BUILTIN_STAGE_SHIFT);
}

static uint64_t word_of_profile(unsigned stage)
{
	uint64_t w = 0;
	for (unsigned i = 0; i < FDN_FLAGS_BUILTIN; i++)
		if (profiles[stage] & (1u << i))
			w = word_set(w, i, FDN_FLAG_ON);
	return word_stage(w, stage);
}

/* A value from the segment: anything above 100 (damage) reads as off. */
static int clamp_value(unsigned v)
{
	return v <= FDN_FLAG_PCT_MAX ? (int)v : 0;
}

/* ---- names and values ----------------------------------------------------- */

static bool name_ok(const char *name)
{
	if (!name)
		return false;
	size_t n = strnlen(name, FDN_FLAG_NAME_MAX + 1);
	if (n == 0 || n > FDN_FLAG_NAME_MAX)
		return false;
	char c0 = name[0];
	if (!((c0 >= 'a' && c0 <= 'z') || (c0 >= 'A' && c0 <= 'Z')))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return false;
	}
	return true;
}

static int builtin_id(const char *name)
{
	for (int i = 0; i < (int)FDN_FLAGS_BUILTIN; i++)
		if (strcmp(builtin_names[i], name) == 0)
			return i;
	return -1;
}

int fdn_flag_parse_value(const char *text, int *value)
{
	if (!text || !value)
		return FDN_EINVAL;
	if (strcmp(text, "on") == 0) {
		*value = FDN_FLAG_ON;
		return 0;
	}
	if (strcmp(text, "off") == 0) {
		*value = FDN_FLAG_OFF;
		return 0;
	}
	const char *p = text;
	bool neg = *p == '-';
	if (neg)
		p++;
	if (*p < '0' || *p > '9')
		return FDN_EINVAL;
	long v = 0;
	for (; *p >= '0' && *p <= '9'; p++)
		if (v < 1000)
			v = v * 10 + (*p - '0');
	if (*p == '%')
		p++;
	if (*p)
		return FDN_EINVAL;
	if (neg || v > FDN_FLAG_ON)
		return FDN_EPERCENT;
	*value = (int)v;
	return 0;
}

/* "name=on|off|PCT,..." over the built-in defaults into vals[]. */
static int parse_defaults(const char *text, unsigned vals[FDN_FLAGS_BUILTIN])
{
	bool seen[FDN_FLAGS_BUILTIN] = {false};
	for (const char *p = text; *p;) {
		char item[FDN_FLAG_NAME_MAX + 16];
		size_t len = strcspn(p, ",");
		if (len == 0 || len >= sizeof(item))
			return FDN_EINVAL;
		memcpy(item, p, len);
		item[len] = 0;
		p += len;
		if (*p == ',' && *++p == 0)
			return FDN_EINVAL; /* a trailing comma */
		char *eq = strchr(item, '=');
		if (!eq)
			return FDN_EINVAL;
		*eq = 0;
		if (!name_ok(item))
			return FDN_EINVAL;
		int id = builtin_id(item);
		if (id < 0)
			return FDN_EUNKFLAG;
		if (seen[id])
			return FDN_EINVAL;
		int v;
		int r = fdn_flag_parse_value(eq + 1, &v);
		if (r)
			return r;
		vals[id] = (unsigned)v;
		seen[id] = true;
	}
	return 0;
}

/* The highest stage whose profile's flags are all on in w. */
static unsigned stage_included(uint64_t w)
{
	unsigned st = 0;
	for (unsigned n = 1; n <= FDN_STAGE_LAST; n++) {
		bool all = true;
		for (unsigned i = 0; i < FDN_FLAGS_BUILTIN; i++)
			if ((profiles[n] & (1u << i)) && FDN_BUILTIN_VALUE(w, i) != FDN_FLAG_ON)
				all = false;
		if (all)
			st = n;
	}
	return st;
}

/* Fill a zeroed flags part from default text ("" = built-in defaults). */
static int flags_setup(struct fdn_shm_flags_hdr *h, struct fdn_shm_flags *r, const char *text)
{
	unsigned vals[FDN_FLAGS_BUILTIN];
	uint64_t def = word_of_profile(DEFAULT_STAGE);
	for (unsigned i = 0; i < FDN_FLAGS_BUILTIN; i++)
		vals[i] = FDN_BUILTIN_VALUE(def, i);
	int e = parse_defaults(text, vals);
	if (e)
		return e;
	uint64_t w = 0;
	for (unsigned i = 0; i < FDN_FLAGS_BUILTIN; i++) {
		w = word_set(w, i, vals[i]);
		struct fdn_shm_flag *f = &r->flags[i];
		memset(f->name, 0, sizeof(f->name));
		memcpy(f->name, builtin_names[i], strlen(builtin_names[i]));
		f->dflt = vals[i];
	}
	unsigned st = stage_included(w);
	w = word_stage(w, st);
	h->stage_default = st;
	h->builtin_default = w;
	atomic_store_explicit(&h->hist_total, 0, memory_order_relaxed);
	atomic_store_explicit(&h->nflags, FDN_FLAGS_BUILTIN, memory_order_relaxed);
	atomic_store_explicit(&h->builtin, w, memory_order_release);
	return 0;
}

/* ---- where the flags are -------------------------------------------------- */

struct fdn_shm_flags_hdr fdn__proc_flags_hdr;
static struct fdn_shm_flags proc_region;
static pthread_mutex_t proc_lock = PTHREAD_MUTEX_INITIALIZER;
static int proc_env_error; /* $FOUNDATION_FLAGS could not be used */

__attribute__((constructor)) static void proc_flags_load(void)
{
	const char *e = getenv("FOUNDATION_FLAGS");
	proc_env_error = flags_setup(&fdn__proc_flags_hdr, &proc_region, e ? e : "");
	if (proc_env_error)
		flags_setup(&fdn__proc_flags_hdr, &proc_region, "");
}

static struct fdn_shm_flags *region_of(fdn_segment *s)
{
	const struct fdn_shm_region *rg = &s->hdr->svc[FDN_SVC_FLAGS];
	uint64_t off = rg->off, size = rg->size;
	if (off % 4096 != 0 || size != FDN_FLAGS_REGION_SIZE || off < FDN_HEADER_SIZE ||
	    off > s->size || s->size - off < size)
		return NULL;
	return (struct fdn_shm_flags *)(void *)(s->base + off);
}

int fdn__flags_init(fdn_segment *s, const struct fdn_segment_opts *o)
{
	const char *text = o ? o->flag_defaults : NULL;
	if (!text)
		text = getenv("FOUNDATION_FLAGS");
	struct fdn_shm_flags *r = region_of(s);
	if (!r)
		return FDN_EBADSEG;
	return flags_setup(fdn__flags_hdr(s), r, text ? text : "");
}

struct fview {
	fdn_segment *s; /* NULL: process memory */
	struct fdn_shm_flags_hdr *h;
	struct fdn_shm_flags *r;
};

enum { V_READ = 0, V_READ_ANY = 1, V_WRITE = 2 };

/* V_READ_ANY: the bool reads, which use the built-in defaults when
 * $FOUNDATION_FLAGS was bad; the other calls report it. */
static int view(fdn_segment *s, int mode, struct fview *v)
{
	v->s = s;
	v->h = fdn__flags_hdr(s);
	if (!s) {
		v->r = &proc_region;
		return mode == V_READ_ANY ? 0 : proc_env_error;
	}
	int r = fdn__seg_usable(s);
	if (r)
		return r;
	if (mode == V_WRITE && (s->readonly || s->proc_idx == UINT32_MAX))
		return FDN_ERDONLY;
	v->r = region_of(s);
	return v->r ? 0 : FDN_ECORRUPT;
}

static uint32_t nflags(const struct fview *v)
{
	uint32_t n = atomic_load_explicit(&v->h->nflags, memory_order_acquire);
	return n < FDN_FLAG_SLOTS ? n : FDN_FLAG_SLOTS;
}

/* Slot index of a flag (name already valid), or -1. */
static int find(const struct fview *v, const char *name)
{
	int id = builtin_id(name);
	if (id >= 0)
		return id;
	uint32_t n = nflags(v);
	for (uint32_t i = FDN_FLAGS_BUILTIN; i < n; i++)
		if (strncmp(v->r->flags[i].name, name, FDN_FLAG_NAME_BYTES) == 0)
			return (int)i;
	return -1;
}

static int value_at(const struct fview *v, uint64_t word, uint32_t i)
{
	if (i < FDN_FLAGS_BUILTIN)
		return clamp_value(FDN_BUILTIN_VALUE(word, i));
	return clamp_value(atomic_load_explicit(&v->r->flags[i].value, memory_order_acquire));
}

/* A slot's name, NUL-terminated whatever the segment holds. */
static void slot_name(const struct fview *v, uint32_t i, char out[FDN_FLAG_NAME_BYTES])
{
	memcpy(out, v->r->flags[i].name, FDN_FLAG_NAME_BYTES);
	out[FDN_FLAG_NAME_BYTES - 1] = 0;
}

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
	bool builtin = c->kind != FDN_CHANGE_FLAG || builtin_id(c->flag) >= 0;
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

/* ---- history records -------------------------------------------------------- */

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
static bool rec_read(const struct fview *v, uint64_t k, struct fdn_flag_change *out)
{
	struct fdn_shm_flag_rec *rec = &v->r->history[k % FDN_FLAG_HISTORY_LEN];
	for (int tries = 0; tries < 4; tries++) {
		uint64_t s1 = atomic_load_explicit(&rec->seq, memory_order_acquire);
		if (s1 != 2 * k + 2)
			return false; /* being written, or overwritten by a newer one */
		struct fdn_shm_flag_rec c;
		memcpy((char *)&c + 8, (const char *)rec + 8, sizeof(c) - 8);
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&rec->seq, memory_order_relaxed) != s1)
			continue;
		*out = (struct fdn_flag_change){.number = k,
						.time_ns = c.time_ns,
						.pid = (pid_t)c.pid,
						.kind = (enum fdn_change_kind)c.kind,
						.from = c.from,
						.to = c.to};
		memcpy(out->flag, c.flag, sizeof(out->flag));
		out->flag[FDN_FLAG_NAME_MAX] = 0;
		memcpy(out->reason, c.reason, sizeof(out->reason));
		out->reason[FDN_FLAG_REASON_MAX] = 0;
		return true;
	}
	return false;
}

/* ---- the journal -------------------------------------------------------------- */

/* The name a journal op refers to. */
static void op_name(const struct fview *v, const struct fdn_shm_flag_op *op,
		    char out[FDN_FLAG_NAME_BYTES])
{
	if (op->flag < FDN_FLAG_SLOTS)
		slot_name(v, op->flag, out);
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
static bool holder_alive(uint64_t w)
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
		if (!holder_alive(cur)) {
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
	int r = view(s, V_WRITE, &c->v);
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

/* ---- reads ------------------------------------------------------------------------ */

static int read_value(fdn_segment *s, int mode, const char *name)
{
	struct fview v;
	int r = view(s, mode, &v);
	if (r)
		return r;
	if (!name_ok(name))
		return FDN_EINVAL;
	int i = find(&v, name);
	if (i < 0)
		return FDN_EUNKFLAG;
	return value_at(&v, atomic_load_explicit(&v.h->builtin, memory_order_acquire), (uint32_t)i);
}

bool fdn_flag_enabled(fdn_segment *s, const char *name)
{
	return read_value(s, V_READ_ANY, name) == FDN_FLAG_ON;
}

bool fdn_flag_enabled_for_id(fdn_segment *s, const char *name, uint64_t id)
{
	int v = read_value(s, V_READ_ANY, name);
	if (v <= 0)
		return false;
	if (v >= FDN_FLAG_ON)
		return true;
	return XXH3_64bits_withSeed(name, strlen(name), id) % 100u < (uint64_t)v;
}

bool fdn_flag_enabled_for_key(fdn_segment *s, const char *name, const void *key, size_t klen)
{
	if ((klen && !key) || klen > 255)
		return false;
	return fdn_flag_enabled_for_id(s, name, XXH3_64bits(klen ? key : "", klen));
}

int fdn_flag_get(fdn_segment *s, const char *name)
{
	return read_value(s, V_READ, name);
}

int fdn_stage(fdn_segment *s)
{
	struct fview v;
	int r = view(s, V_READ, &v);
	if (r)
		return r;
	unsigned st = FDN_BUILTIN_STAGE(atomic_load_explicit(&v.h->builtin, memory_order_acquire));
	return st <= FDN_STAGE_LAST ? (int)st : FDN_ECORRUPT;
}

bool fdn_stage_profile_has(int n, const char *name)
{
	if (n < 0 || n > (int)FDN_STAGE_LAST || !name)
		return false;
	int id = builtin_id(name);
	return id >= 0 && (profiles[n] & (1u << id));
}

int fdn_stage_info(int n, struct fdn_stage_info *out)
{
	if (n < 0 || n > (int)FDN_STAGE_LAST)
		return FDN_ESTAGE;
	if (!out)
		return FDN_EINVAL;
	*out = (struct fdn_stage_info){.stage = n,
				       .name = stage_catalogue[n].name,
				       .description = stage_catalogue[n].description,
				       .risk = stage_catalogue[n].risk,
				       .risk_note = stage_catalogue[n].risk_note};
	for (unsigned i = 0; i < FDN_FLAGS_BUILTIN; i++)
		if (profiles[n] & (1u << i))
			out->enables[out->nenables++] = builtin_names[i];
	return 0;
}

int fdn_flags_list(fdn_segment *s, struct fdn_flag_info *out, int cap)
{
	struct fview v;
	int r = view(s, V_READ, &v);
	if (r)
		return r;
	if (cap < 0 || (cap > 0 && !out))
		return FDN_EINVAL;
	uint64_t w = atomic_load_explicit(&v.h->builtin, memory_order_acquire);
	uint32_t n = nflags(&v);
	for (uint32_t i = 0; i < n && i < (uint32_t)cap; i++) {
		struct fdn_flag_info *f = &out[i];
		slot_name(&v, i, f->name);
		f->value = value_at(&v, w, i);
		f->default_value = clamp_value(v.r->flags[i].dflt);
		f->builtin = i < FDN_FLAGS_BUILTIN;
		f->changed_ns =
		    atomic_load_explicit(&v.r->flags[i].changed_ns, memory_order_relaxed);
	}
	return (int)n;
}

int fdn_flags_history(fdn_segment *s, struct fdn_flag_change *out, int cap)
{
	struct fview v;
	int r = view(s, V_READ, &v);
	if (r)
		return r;
	if (cap < 0 || (cap > 0 && !out))
		return FDN_EINVAL;
	uint64_t total = atomic_load_explicit(&v.h->hist_total, memory_order_acquire);
	uint64_t first = total > FDN_FLAG_HISTORY_LEN ? total - FDN_FLAG_HISTORY_LEN : 0;
	if (total - first > (uint64_t)cap)
		first = total - (uint64_t)cap;
	int n = 0;
	for (uint64_t k = first; k < total; k++)
		if (rec_read(&v, k, &out[n]))
			n++;
	return n;
}

uint64_t fdn_flags_history_total(fdn_segment *s)
{
	struct fview v;
	if (view(s, V_READ_ANY, &v))
		return 0;
	return atomic_load_explicit(&v.h->hist_total, memory_order_acquire);
}

/* ---- writes ------------------------------------------------------------------------ */

/* A set's or create's arguments: FDN_EINVAL (name), FDN_EPERCENT (value). */
static int write_args(const char *name, int value)
{
	if (!name_ok(name))
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
	int i = find(&c.v, name);
	if (i < 0) {
		write_end(&c, false);
		return FDN_EUNKFLAG;
	}
	uint64_t w = atomic_load_explicit(&c.v.h->builtin, memory_order_relaxed);
	int from = value_at(&c.v, w, (uint32_t)i);
	if (from != value) {
		plan_op(&c, (uint32_t)i, from, value);
		if (i < (int)FDN_FLAGS_BUILTIN) {
			c.plan.has_builtin = 1;
			c.plan.builtin = word_set(w, (unsigned)i, (unsigned)value);
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
	if (find(&c.v, name) >= 0) {
		write_end(&c, false);
		return FDN_EEXISTS;
	}
	uint32_t n = nflags(&c.v);
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
	uint32_t n = nflags(&c.v);
	for (uint32_t i = 0; i < n; i++) {
		int from = value_at(&c.v, w, i);
		int to = i < FDN_FLAGS_BUILTIN ? clamp_value(FDN_BUILTIN_VALUE(d, i))
					       : clamp_value(c.v.r->flags[i].dflt);
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
	uint64_t nw = word_of_profile((unsigned)n);
	for (uint32_t i = 0; i < FDN_FLAGS_BUILTIN; i++) {
		int from = clamp_value(FDN_BUILTIN_VALUE(w, i));
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

/* ---- the audit ---------------------------------------------------------------------- */

static void audit_word(struct fdn__audit *a, uint64_t w, const char *what)
{
	if (FDN_BUILTIN_RESERVED(w))
		fdn__violation(a, "flags.word", "%s: reserved bits set (%#llx)", what,
			       (unsigned long long)w);
	if (FDN_BUILTIN_STAGE(w) > FDN_STAGE_LAST)
		fdn__violation(a, "flags.stage", "%s: stage %u outside 0..4", what,
			       FDN_BUILTIN_STAGE(w));
	for (unsigned i = 0; i < FDN_FLAGS_BUILTIN; i++)
		if (FDN_BUILTIN_VALUE(w, i) > FDN_FLAG_PCT_MAX)
			fdn__violation(a, "flags.value", "%s: %s = %u, outside 0..100", what,
				       builtin_names[i], FDN_BUILTIN_VALUE(w, i));
}

static void audit_slots(struct fdn__audit *a, const struct fview *v, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		const struct fdn_shm_flag *f = &v->r->flags[i];
		if (!memchr(f->name, 0, sizeof(f->name))) {
			fdn__violation(a, "flags.name", "flag slot %u: name not NUL-terminated", i);
			continue;
		}
		if (!name_ok(f->name))
			fdn__violation(a, "flags.name", "flag slot %u: invalid name", i);
		else if (i < FDN_FLAGS_BUILTIN ? strcmp(f->name, builtin_names[i]) != 0
					       : builtin_id(f->name) >= 0)
			fdn__violation(a, "flags.name", "flag slot %u: \"%s\" in the wrong slot", i,
				       f->name);
		for (uint32_t k = 0; k < i; k++)
			if (strncmp(v->r->flags[k].name, f->name, sizeof(f->name)) == 0)
				fdn__violation(a, "flags.name",
					       "flag slot %u: \"%s\" also in slot %u", i, f->name,
					       k);
		uint32_t val = atomic_load_explicit(&f->value, memory_order_relaxed);
		if (f->dflt > FDN_FLAG_PCT_MAX)
			fdn__violation(a, "flags.value", "flag \"%s\": default %u outside 0..100",
				       f->name, f->dflt);
		if (i >= FDN_FLAGS_BUILTIN && val > FDN_FLAG_PCT_MAX)
			fdn__violation(a, "flags.value", "flag \"%s\": value %u outside 0..100",
				       f->name, val);
		if (i < FDN_FLAGS_BUILTIN && val != 0)
			fdn__violation(a, "flags.value",
				       "built-in flag \"%s\": slot value %u, not 0", f->name, val);
	}
}

static void audit_record(struct fdn__audit *a, const struct fview *v, uint64_t k)
{
	const struct fdn_shm_flag_rec *rec = &v->r->history[k % FDN_FLAG_HISTORY_LEN];
	uint64_t seq = atomic_load_explicit(&rec->seq, memory_order_acquire);
	if (seq != 2 * k + 2) {
		fdn__violation(a, "flags.history", "record %llu: seq %llu, expected %llu",
			       (unsigned long long)k, (unsigned long long)seq,
			       (unsigned long long)(2 * k + 2));
		return;
	}
	if (!memchr(rec->flag, 0, sizeof(rec->flag)) ||
	    !memchr(rec->reason, 0, sizeof(rec->reason)))
		fdn__violation(a, "flags.history", "record %llu: text not NUL-terminated",
			       (unsigned long long)k);
	bool ok =
	    rec->kind == FDN_FLAGREC_FLAG ? rec->from >= FDN_FLAGREC_CREATED && rec->from <= 100 &&
						rec->to >= 0 && rec->to <= 100 && rec->flag[0] != 0
	    : rec->kind == FDN_FLAGREC_STAGE
		? rec->from >= 0 && rec->from <= (int)FDN_STAGE_LAST && rec->to >= 0 &&
		      rec->to <= (int)FDN_STAGE_LAST && rec->flag[0] == 0
	    : rec->kind == FDN_FLAGREC_ALERT
		? rec->from >= 0 && rec->from <= (int)FDN_STAGE_LAST && rec->to >= 0 &&
		      rec->to <= (int)FDN_STAGE_LAST && strcmp(rec->flag, ALERT_EMERGENCY) == 0
		: false;
	if (!ok)
		fdn__violation(a, "flags.history",
			       "record %llu: kind %u, from %d, to %d out of range",
			       (unsigned long long)k, rec->kind, rec->from, rec->to);
}

int fdn__flags_check(fdn_segment *s, fdn_check_cb cb, void *arg)
{
	struct fdn__audit a = {cb, arg, 0};
	struct fview v;
	int r = view(s, V_READ, &v);
	if (r == FDN_ECORRUPT) {
		fdn__violation(&a, "flags.region", "flags region missing or out of bounds");
		return a.n;
	}
	if (r)
		return r;
	audit_word(&a, atomic_load_explicit(&v.h->builtin, memory_order_acquire), "flags");
	audit_word(&a, v.h->builtin_default, "defaults");
	if (v.h->stage_default != FDN_BUILTIN_STAGE(v.h->builtin_default))
		fdn__violation(&a, "flags.stage", "default stage %u, the defaults say %u",
			       v.h->stage_default, FDN_BUILTIN_STAGE(v.h->builtin_default));
	uint32_t n = atomic_load_explicit(&v.h->nflags, memory_order_acquire);
	if (n < FDN_FLAGS_BUILTIN || n > FDN_FLAG_SLOTS) {
		fdn__violation(&a, "flags.count", "%u flags, outside 7..%u", n, FDN_FLAG_SLOTS);
		n = n > FDN_FLAG_SLOTS ? FDN_FLAG_SLOTS : n;
	}
	audit_slots(&a, &v, n);
	uint64_t total = atomic_load_explicit(&v.h->hist_total, memory_order_acquire);
	uint64_t first = total > FDN_FLAG_HISTORY_LEN ? total - FDN_FLAG_HISTORY_LEN : 0;
	for (uint64_t k = first; k < total; k++)
		audit_record(&a, &v, k);
	for (uint64_t k = total; k < FDN_FLAG_HISTORY_LEN; k++)
		if (atomic_load_explicit(&v.r->history[k].seq, memory_order_relaxed) != 0)
			fdn__violation(&a, "flags.history",
				       "record slot %llu written beyond the count %llu",
				       (unsigned long long)k, (unsigned long long)total);
	uint64_t lock = atomic_load_explicit(&v.h->lock, memory_order_acquire);
	uint32_t js = atomic_load_explicit(&v.r->journal.state, memory_order_acquire);
	if (lock && !holder_alive(lock))
		fdn__violation(&a, "flags.lock", "flags lock held by dead pid %u%s",
			       FDN_PROC_PID(lock),
			       js == FDN_JOURNAL_PENDING ? " with a change half applied" : "");
	else if (!lock && js != FDN_JOURNAL_IDLE)
		fdn__violation(&a, "flags.journal", "journal state %u with the lock free", js);
	return a.n;
}
