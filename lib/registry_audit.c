/*
 * registry_audit.c - the registry's part of fdn_check (fdn__registry_check):
 * every entry's encoding and references, every reference's staleness.
 * Calls registry_index.c and registry_purge.c (fdn__ref_stale).
 */
#include "lib/registry_int.h"

#include <stdio.h>

struct audit {
	fdn_segment *s;
	fdn_check_cb cb;
	void *arg;
	int n;
	const void *key;
	size_t klen;
};

static void bad(struct audit *a, const char *msg, const void *key, size_t klen)
{
	char line[400];
	snprintf(line, sizeof(line), "%s: key \"%.*s\"", msg, (int)(klen > 200 ? 200 : klen),
		 (const char *)key);
	a->n++;
	if (a->cb)
		a->cb(a->arg, "registry", line);
}

static int has_ref_cb(void *arg, const unsigned char *prefix, size_t plen)
{
	struct audit *a = arg;
	if (!fdn__reg_ref_exists(a->s, prefix, plen, a->key, a->klen))
		bad(a, "indexed value without its index reference", a->key, a->klen);
	return 0;
}

static int audit_main_cb(void *arg, const struct fdn__ht_view *v)
{
	struct audit *a = arg;
	struct rec r;
	struct fdn_entry_view e;
	const unsigned char *attrs;
	/* Readers trust the encoding written (top of registry.c): the audit
	 * is where a damaged one is found. */
	if (rec_of(v, &r, &attrs) && fdn_attrs_validate(attrs, r.attrs_len) != 0) {
		bad(a, "malformed attribute encoding", v->key, v->key_len);
		return 0;
	}
	if (visible(a->s, v, &r, &e)) {
		a->key = v->key;
		a->klen = v->key_len;
		return fdn__reg_each_ref(a->s, r.owner_idx, r.owner_word, e.attrs, e.attrs_len,
					 has_ref_cb, a);
	}
	if (!rec_of(v, &r, &attrs)) {
		bad(a, "malformed record", v->key, v->key_len);
		return 0;
	}
	/* Not visible: fine while its owner's slot awaits the reaper (DEAD),
	 * a leak otherwise. */
	uint64_t w = r.owner_idx < a->s->nprocs ? atomic_load(&a->s->procs[r.owner_idx].word) : 0;
	bool awaiting = FDN_PROC_GONE(w) && FDN_PROC_IDENT40(w) == FDN_PROC_IDENT40(r.owner_word);
	if (!awaiting && !fdn__word_live(a->s, r.owner_idx, r.owner_word))
		bad(a, "entry of a vanished owner", v->key, v->key_len);
	return 0;
}

static int audit_index_cb(void *arg, const struct fdn__ht_view *v)
{
	struct audit *a = arg;
	struct ref_val rv;
	if (fdn__reg_ref_of(v, &rv)) {
		uint64_t w =
		    rv.owner_idx < a->s->nprocs ? atomic_load(&a->s->procs[rv.owner_idx].word) : 0;
		if (FDN_PROC_GONE(w) && FDN_PROC_IDENT40(w) == FDN_PROC_IDENT40(rv.owner_word))
			return 0; /* awaiting the reaper */
	}
	if (fdn__ref_stale(a->s, v))
		bad(a, "stale index reference", v->key, v->key_len);
	return 0;
}

int fdn__registry_check(fdn_segment *s, fdn_check_cb cb, void *arg)
{
	struct audit a = {s, cb, arg, 0, NULL, 0};
	struct fdn__thread *t = NULL;
	int r;
	if (!s->readonly && (r = fdn__rcu_read_lock(s, &t)))
		return r;
	r = fdn__ht_foreach(s, T_MAIN, audit_main_cb, &a);
	if (r == 0)
		r = fdn__ht_foreach(s, T_INDEX, audit_index_cb, &a);
	if (t)
		fdn__rcu_read_unlock(t);
	return r < 0 ? r : a.n;
}
