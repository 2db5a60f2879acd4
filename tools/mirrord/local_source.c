/*
 * tools/mirrord/local_source.c - STAND-IN for the changefeed (see
 * local_source.h): a full scan of the local entries (fdn_foreach, which
 * leaves out the remote namespace), diffed against the previous scan.
 *
 * Cost: O(local entries) per call, whatever changed; a change made and
 * undone between two scans is not seen (the etcd state stays right: it
 * equals the last scan).  The changefeed removes both limits.
 */
#include "local_source.h"

#include "etcd.h"
#include "format.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct local_source {
	fdn_segment *s;
	char *host;
	json_object *last; /* the previous scan */
	int64_t scans;
};

struct local_source *local_source_open(fdn_segment *s, const char *host)
{
	struct local_source *ls = calloc(1, sizeof(*ls));
	if (!ls)
		return NULL;
	ls->s = s;
	ls->host = strdup(host);
	ls->last = json_object_new_object();
	return ls;
}

void local_source_close(struct local_source *ls)
{
	if (!ls)
		return;
	json_object_put(ls->last);
	free(ls->host);
	free(ls);
}

struct scan {
	struct local_source *ls;
	json_object *map;
};

static int scan_cb(void *arg, const struct fdn_entry_view *e)
{
	struct scan *sc = arg;
	char *k = b64_encode(e->key, e->key_len);
	char *v = entry_to_json(sc->ls->host, e);
	if (!k || !v) {
		free(k);
		free(v);
		return -ENOMEM;
	}
	json_object_object_add(sc->map, k, json_object_new_string(v));
	free(k);
	free(v);
	return 0;
}

static int scan(struct local_source *ls, json_object **map)
{
	struct scan sc = {ls, json_object_new_object()};
	int r = fdn_foreach(ls->s, scan_cb, &sc);
	if (r < 0) {
		json_object_put(sc.map);
		return r;
	}
	ls->scans++;
	*map = sc.map;
	return 0;
}

int local_source_snapshot(struct local_source *ls, json_object **snap, int64_t *rev)
{
	json_object *m;
	int r = scan(ls, &m);
	if (r)
		return r;
	json_object_put(ls->last);
	ls->last = json_object_get(m);
	*snap = m;
	*rev = ls->scans;
	return 0;
}

int local_source_next_changes(struct local_source *ls, json_object **puts, json_object **dels)
{
	json_object *m;
	int r = scan(ls, &m);
	if (r)
		return r;
	*puts = json_object_new_object();
	*dels = json_object_new_array();
	json_object_object_foreach(m, k, v)
	{
		json_object *old;
		if (!json_object_object_get_ex(ls->last, k, &old) ||
		    strcmp(json_object_get_string(old), json_object_get_string(v)) != 0)
			json_object_object_add(*puts, k, json_object_get(v));
	}
	json_object_object_foreach(ls->last, k2, v2)
	{
		(void)v2;
		if (!json_object_object_get_ex(m, k2, NULL))
			json_object_array_add(*dels, json_object_new_string(k2));
	}
	json_object_put(ls->last);
	ls->last = m;
	return 0;
}

int local_source_fd(struct local_source *ls)
{
	(void)ls;
	return -1;
}

int64_t local_source_size(struct local_source *ls)
{
	return json_object_object_length(ls->last);
}
