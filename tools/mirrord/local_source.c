/*
 * tools/mirrord/local_source.c - the local entries and their changes, from
 * the registry's change feed (local_source.h, docs/changefeed.md).
 *
 * Why the publisher, fed from here, leaves etcd equal to the local
 * registry -- nothing missed, nothing left behind:
 *
 *  1. A snapshot lists every key of the table as of revision R (the
 *     library corrects its walk with the log records written meanwhile),
 *     and the subscription is then positioned after R (seek), so the
 *     snapshot followed by the changes read is every change of every key,
 *     each once, in revision order per key.  If the ring overwrites a
 *     change before it is read, the read says so (FDN_EOVERFLOW) instead of
 *     skipping it, and the publisher starts over from 1 with a new
 *     snapshot diffed against what etcd holds.
 *
 *  2. Records carry no attributes: for a key whose last change read is
 *     registered/updated, the attributes are read with fdn_lookup_view when
 *     the batch is built, after that change took effect.  What the lookup
 *     sees is the key's state at some revision R' >= the change's
 *     revision:
 *       - an entry: it is put.  If the key changes after R', that change
 *         has a revision > R' and will be read later (or the ring overruns:
 *         1), and is applied after this put (batches are written in order,
 *         by one thread), so a newer state always overwrites this one;
 *       - no entry: the key was unregistered or removed after the change
 *         read, or its owner is dead and the reaper is taking it out
 *         (dead owners' entries are invisible to lookups before their
 *         removal record is written).  Either way a record
 *         unregistered/removed with a revision > the change's follows, and
 *         deletes the key from etcd; until then etcd keeps the value it
 *         had (an older state of the key, or nothing).  Nothing is put.
 *     So after every change up to some revision has been read and
 *     published, etcd holds, for each key, its value at a revision at
 *     least as new, or a state a pending record will correct.
 *
 *  3. Deletes need no lookup: the record says the key left.  A key
 *     re-registered between the removal and the batch has a newer
 *     registered record that follows.
 *
 *  4. Within one read, changes of a key are folded (the last one read
 *     decides): the intermediate states would be overwritten by the last
 *     anyway, and an etcd transaction may not name a key twice.
 *
 * Remote keys (first byte FDN_REG_REMOTE_BYTE) are dropped at the source:
 * from the snapshot's callback and from each change read.  A local writer
 * cannot create such a key (fdn_register refuses it without
 * FDN_REG_MIRROR), so every one of them is the agent's mirror or status.
 */
#include "local_source.h"

#include "etcd.h"
#include "format.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define READ_CHUNK 256

struct local_source {
	fdn_segment *s;
	char *host;
	fdn_subscription *sub;
	json_object *keys; /* base64 key -> NULL: the local keys published */
	uint64_t rev;
	struct fdn_change buf[READ_CHUNK];
};

static bool is_remote(const void *key, size_t klen)
{
	return klen > 0 && *(const unsigned char *)key == FDN_REG_REMOTE_BYTE;
}

struct local_source *local_source_open(fdn_segment *s, const char *host, int *err)
{
	struct local_source *ls = calloc(1, sizeof(*ls));
	if (!ls)
		return NULL;
	ls->s = s;
	ls->host = strdup(host);
	ls->keys = json_object_new_object();
	/* From "now": every change before the first snapshot is covered by
	 * it, since local_source_snapshot seeks to the snapshot's revision. */
	int r = fdn_subscribe(s, NULL, 0, 0, &ls->sub);
	if (r || !ls->host || !ls->keys) {
		*err = r ? r : -ENOMEM;
		local_source_close(ls);
		return NULL;
	}
	return ls;
}

void local_source_close(struct local_source *ls)
{
	if (!ls)
		return;
	fdn_subscription_close(ls->sub);
	json_object_put(ls->keys);
	free(ls->host);
	free(ls);
}

/* The value text of key as fdn_lookup_view sees it now: *out, or NULL
 * when the key has no visible entry. */
struct value {
	const char *host;
	char *text;
};

static int value_cb(void *arg, const struct fdn_entry_view *e)
{
	struct value *v = arg;
	v->text = entry_to_json(v->host, e);
	return v->text ? 0 : -ENOMEM;
}

static int value_now(struct local_source *ls, const void *key, size_t klen, char **out)
{
	struct value v = {ls->host, NULL};
	int r = fdn_lookup_view(ls->s, key, klen, value_cb, &v);
	*out = v.text;
	if (r == FDN_ENOTFOUND)
		return 0;
	if (r) {
		free(v.text);
		*out = NULL;
	}
	return r;
}

/* The snapshot's keys; attributes are read after the walk (its callback
 * must not stay long: the walk is corrected with the log records written
 * meanwhile, and a long walk risks an overrun). */
static int snap_cb(void *arg, const void *key, uint32_t key_len, pid_t pid)
{
	(void)pid;
	if (is_remote(key, key_len))
		return 0;
	char *k = b64_encode(key, key_len);
	if (!k)
		return -ENOMEM;
	json_object_object_add(arg, k, NULL);
	free(k);
	return 0;
}

int local_source_snapshot(struct local_source *ls, json_object **snap, uint64_t *rev)
{
	json_object *keys = json_object_new_object(), *m = json_object_new_object();
	uint64_t r0 = 0;
	int r = keys && m ? fdn_registry_snapshot(ls->s, NULL, 0, snap_cb, keys, &r0) : -ENOMEM;
	if (r >= 0)
		r = 0;
	json_object_object_foreach(keys, k, unused)
	{
		(void)unused;
		if (r)
			break;
		size_t kl;
		unsigned char *kb = b64_decode(k, &kl);
		char *text = NULL;
		r = kb ? value_now(ls, kb, kl, &text) : -ENOMEM;
		/* No entry: its owner died (a snapshot lists the entries the
		 * reaper is removing, whose removal records follow R) or it
		 * left after R (its record follows too).  Left out. */
		if (r == 0 && text)
			json_object_object_add(m, k, json_object_new_string(text));
		free(text);
		free(kb);
	}
	json_object_put(keys);
	if (r == 0)
		r = fdn_subscription_seek(ls->sub, r0);
	if (r) {
		json_object_put(m);
		return r;
	}
	/* The published set is the snapshot's: entries the lookups found. */
	json_object_put(ls->keys);
	ls->keys = json_object_new_object();
	json_object_object_foreach(m, k2, v2)
	{
		(void)v2;
		json_object_object_add(ls->keys, k2, NULL);
	}
	ls->rev = r0;
	*snap = m;
	*rev = r0;
	return 0;
}

int local_source_next_changes(struct local_source *ls, size_t max, json_object **puts,
			      json_object **dels, bool *more)
{
	/* base64 key -> true (put) / false (delete): the last change read of
	 * each key (4). */
	json_object *fold = json_object_new_object();
	size_t got = 0;
	int n = 0;
	*more = false;
	while (got < max) {
		size_t want = max - got < READ_CHUNK ? max - got : READ_CHUNK;
		n = fdn_subscription_read(ls->sub, ls->buf, want);
		if (n < 0)
			break;
		for (int i = 0; i < n; i++) {
			const struct fdn_change *c = &ls->buf[i];
			ls->rev = c->revision;
			if (is_remote(c->key, c->key_len))
				continue; /* never republished */
			char *k = b64_encode(c->key, c->key_len);
			if (!k) {
				n = -ENOMEM;
				break;
			}
			bool put =
			    c->kind == FDN_CHANGE_REGISTERED || c->kind == FDN_CHANGE_UPDATED;
			json_object_object_add(fold, k, json_object_new_boolean(put));
			free(k);
		}
		if (n < 0)
			break;
		got += (size_t)n;
		if ((size_t)n < want)
			break; /* nothing more waiting */
		if (got == max)
			*more = true;
	}
	if (n < 0) {
		json_object_put(fold);
		return n;
	}
	*puts = json_object_new_object();
	*dels = json_object_new_array();
	int r = 0;
	json_object_object_foreach(fold, k, v)
	{
		if (!json_object_get_boolean(v)) {
			json_object_array_add(*dels, json_object_new_string(k));
			json_object_object_del(ls->keys, k);
			continue;
		}
		size_t kl;
		unsigned char *kb = b64_decode(k, &kl);
		char *text = NULL;
		r = kb ? value_now(ls, kb, kl, &text) : -ENOMEM;
		free(kb);
		if (r)
			break;
		if (text) { /* else: gone since; its removal record follows (2) */
			json_object_object_add(*puts, k, json_object_new_string(text));
			json_object_object_add(ls->keys, k, NULL);
		}
		free(text);
	}
	json_object_put(fold);
	if (r) {
		json_object_put(*puts);
		json_object_put(*dels);
		*puts = *dels = NULL;
	}
	return r;
}

int local_source_fd(struct local_source *ls)
{
	return fdn_subscription_fd(ls->sub);
}

int64_t local_source_size(struct local_source *ls)
{
	return json_object_object_length(ls->keys);
}

uint64_t local_source_revision(struct local_source *ls)
{
	return ls->rev;
}
