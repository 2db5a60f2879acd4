/*
 * flags_audit.c - the flags service's audit (fdn__flags_check): names,
 * values, stage, history, lock.  Calls flags.c and flags_write.c
 * (fdn__fl_holder_alive) through lib/flags_int.h.
 */
#include "lib/flags_int.h"

#include <foundation/flags.h>

#include <stdio.h>
#include <string.h>

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
				       fdn__fl_builtin_names[i], FDN_BUILTIN_VALUE(w, i));
}

static void audit_slots(struct fdn__audit *a, const struct fview *v, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		const struct fdn_shm_flag *f = &v->r->flags[i];
		if (!memchr(f->name, 0, sizeof(f->name))) {
			fdn__violation(a, "flags.name", "flag slot %u: name not NUL-terminated", i);
			continue;
		}
		if (!fdn__fl_name_ok(f->name))
			fdn__violation(a, "flags.name", "flag slot %u: invalid name", i);
		else if (i < FDN_FLAGS_BUILTIN ? strcmp(f->name, fdn__fl_builtin_names[i]) != 0
					       : fdn__fl_builtin_id(f->name) >= 0)
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
	int r = fdn__fl_view(s, V_READ, &v);
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
	if (lock && !fdn__fl_holder_alive(lock))
		fdn__violation(&a, "flags.lock", "flags lock held by dead pid %u%s",
			       FDN_PROC_PID(lock),
			       js == FDN_JOURNAL_PENDING ? " with a change half applied" : "");
	else if (!lock && js != FDN_JOURNAL_IDLE)
		fdn__violation(&a, "flags.journal", "journal state %u with the lock free", js);
	return a.n;
}
