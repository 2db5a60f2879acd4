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
 *
 * The files.  flags.c: names and values, where the flags are, the history
 * records' reader, and the reads; flags_write.c: the events, the journal,
 * the lock and the writes; flags_audit.c: the audit.  Both call this file
 * (lib/flags_int.h); it calls neither.
 */
#include "lib/flags_int.h"

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

const char *const fdn__fl_builtin_names[FDN_FLAGS_BUILTIN] = {
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

#define DEFAULT_STAGE 3u /* the built-in defaults: stage 3's profile */

/* ---- the built-in word -------------------------------------------------- */

uint64_t fdn__fl_word_set(uint64_t w, unsigned i, unsigned v)
{
	return (w & ~FDN_BUILTIN_FIELD(i)) | ((uint64_t)v << (FDN_BUILTIN_BITS * i));
}

static uint64_t word_stage(uint64_t w, unsigned stage)
{
	return (w & ~(0x7ull << FDN_BUILTIN_STAGE_SHIFT)) |
	       ((uint64_t)stage << FDN_BUILTIN_STAGE_SHIFT);
}

uint64_t fdn__fl_word_of_profile(unsigned stage)
{
	uint64_t w = 0;
	for (unsigned i = 0; i < FDN_FLAGS_BUILTIN; i++)
		if (profiles[stage] & (1u << i))
			w = fdn__fl_word_set(w, i, FDN_FLAG_ON);
	return word_stage(w, stage);
}

/* A value from the segment: anything above 100 (damage) reads as off. */
int fdn__fl_clamp_value(unsigned v)
{
	return v <= FDN_FLAG_PCT_MAX ? (int)v : 0;
}

/* ---- names and values ----------------------------------------------------- */

bool fdn__fl_name_ok(const char *name)
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

int fdn__fl_builtin_id(const char *name)
{
	for (int i = 0; i < (int)FDN_FLAGS_BUILTIN; i++)
		if (strcmp(fdn__fl_builtin_names[i], name) == 0)
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
		if (!fdn__fl_name_ok(item))
			return FDN_EINVAL;
		int id = fdn__fl_builtin_id(item);
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
	uint64_t def = fdn__fl_word_of_profile(DEFAULT_STAGE);
	for (unsigned i = 0; i < FDN_FLAGS_BUILTIN; i++)
		vals[i] = FDN_BUILTIN_VALUE(def, i);
	int e = parse_defaults(text, vals);
	if (e)
		return e;
	uint64_t w = 0;
	for (unsigned i = 0; i < FDN_FLAGS_BUILTIN; i++) {
		w = fdn__fl_word_set(w, i, vals[i]);
		struct fdn_shm_flag *f = &r->flags[i];
		memset(f->name, 0, sizeof(f->name));
		memcpy(f->name, fdn__fl_builtin_names[i], strlen(fdn__fl_builtin_names[i]));
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

/* V_READ_ANY: the bool reads, which use the built-in defaults when
 * $FOUNDATION_FLAGS was bad; the other calls report it. */
int fdn__fl_view(fdn_segment *s, int mode, struct fview *v)
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

uint32_t fdn__fl_nflags(const struct fview *v)
{
	uint32_t n = atomic_load_explicit(&v->h->nflags, memory_order_acquire);
	return n < FDN_FLAG_SLOTS ? n : FDN_FLAG_SLOTS;
}

/* Slot index of a flag (name already valid), or -1. */
int fdn__fl_find(const struct fview *v, const char *name)
{
	int id = fdn__fl_builtin_id(name);
	if (id >= 0)
		return id;
	uint32_t n = fdn__fl_nflags(v);
	for (uint32_t i = FDN_FLAGS_BUILTIN; i < n; i++)
		if (strncmp(v->r->flags[i].name, name, FDN_FLAG_NAME_BYTES) == 0)
			return (int)i;
	return -1;
}

int fdn__fl_value_at(const struct fview *v, uint64_t word, uint32_t i)
{
	if (i < FDN_FLAGS_BUILTIN)
		return fdn__fl_clamp_value(FDN_BUILTIN_VALUE(word, i));
	return fdn__fl_clamp_value(
	    atomic_load_explicit(&v->r->flags[i].value, memory_order_acquire));
}

/* A slot's name, NUL-terminated whatever the segment holds. */
void fdn__fl_slot_name(const struct fview *v, uint32_t i, char out[FDN_FLAG_NAME_BYTES])
{
	memcpy(out, v->r->flags[i].name, FDN_FLAG_NAME_BYTES);
	out[FDN_FLAG_NAME_BYTES - 1] = 0;
}

/* ---- history records -------------------------------------------------------- */

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

/* ---- reads ------------------------------------------------------------------------ */

static int read_value(fdn_segment *s, int mode, const char *name)
{
	struct fview v;
	int r = fdn__fl_view(s, mode, &v);
	if (r)
		return r;
	if (!fdn__fl_name_ok(name))
		return FDN_EINVAL;
	int i = fdn__fl_find(&v, name);
	if (i < 0)
		return FDN_EUNKFLAG;
	return fdn__fl_value_at(&v, atomic_load_explicit(&v.h->builtin, memory_order_acquire),
				(uint32_t)i);
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
	int r = fdn__fl_view(s, V_READ, &v);
	if (r)
		return r;
	unsigned st = FDN_BUILTIN_STAGE(atomic_load_explicit(&v.h->builtin, memory_order_acquire));
	return st <= FDN_STAGE_LAST ? (int)st : FDN_ECORRUPT;
}

bool fdn_stage_profile_has(int n, const char *name)
{
	if (n < 0 || n > (int)FDN_STAGE_LAST || !name)
		return false;
	int id = fdn__fl_builtin_id(name);
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
			out->enables[out->nenables++] = fdn__fl_builtin_names[i];
	return 0;
}

/* The flags for a call that fills out[0..cap): FDN_EINVAL if cap < 0, or
 * cap > 0 and no out. */
static int list_view(fdn_segment *s, const void *out, int cap, struct fview *v)
{
	int r = fdn__fl_view(s, V_READ, v);
	if (r)
		return r;
	return cap < 0 || (cap > 0 && !out) ? FDN_EINVAL : 0;
}

int fdn_flags_list(fdn_segment *s, struct fdn_flag_info *out, int cap)
{
	struct fview v;
	int r = list_view(s, out, cap, &v);
	if (r)
		return r;
	uint64_t w = atomic_load_explicit(&v.h->builtin, memory_order_acquire);
	uint32_t n = fdn__fl_nflags(&v);
	for (uint32_t i = 0; i < n && i < (uint32_t)cap; i++) {
		struct fdn_flag_info *f = &out[i];
		fdn__fl_slot_name(&v, i, f->name);
		f->value = fdn__fl_value_at(&v, w, i);
		f->default_value = fdn__fl_clamp_value(v.r->flags[i].dflt);
		f->builtin = i < FDN_FLAGS_BUILTIN;
		f->changed_ns =
		    atomic_load_explicit(&v.r->flags[i].changed_ns, memory_order_relaxed);
	}
	return (int)n;
}

int fdn_flags_history(fdn_segment *s, struct fdn_flag_change *out, int cap)
{
	struct fview v;
	int r = list_view(s, out, cap, &v);
	if (r)
		return r;
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
	if (fdn__fl_view(s, V_READ_ANY, &v))
		return 0;
	return atomic_load_explicit(&v.h->hist_total, memory_order_acquire);
}
