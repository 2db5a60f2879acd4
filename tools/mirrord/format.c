/*
 * tools/mirrord/format.c - an entry to and from its value in etcd
 * (format.h), written and read with json-c.
 */
#include "format.h"

#include <stdlib.h>
#include <string.h>

static const char *type_name(enum fdn_attr_type t)
{
	switch (t) {
	case FDN_ATTR_STRING:
		return "string";
	case FDN_ATTR_INT:
		return "int";
	case FDN_ATTR_DOUBLE:
		return "double";
	case FDN_ATTR_BOOL:
		return "bool";
	case FDN_ATTR_LIST:
		return "list";
	}
	return "?";
}

char *entry_to_json(const char *host, const struct fdn_entry_view *e)
{
	json_object *o = json_object_new_object(), *as = json_object_new_array();
	json_object_object_add(o, "format", json_object_new_int(FDN_CLUSTER_FORMAT));
	json_object_object_add(o, "host", json_object_new_string(host));
	json_object_object_add(o, "pid", json_object_new_int64(e->pid));
	json_object_object_add(o, "registered_ns",
			       json_object_new_int64((int64_t)e->registered_ns));
	uint32_t n = fdn_attrs_count(e->attrs, e->attrs_len);
	for (uint32_t i = 0; i < n; i++) {
		struct fdn_attr a;
		if (fdn_attrs_at(e->attrs, e->attrs_len, i, &a))
			continue;
		json_object *x = json_object_new_object(), *v = NULL;
		json_object_object_add(x, "name", json_object_new_string(a.name));
		json_object_object_add(x, "type", json_object_new_string(type_name(a.type)));
		switch (a.type) {
		case FDN_ATTR_STRING:
			v = json_object_new_string(a.v.s);
			break;
		case FDN_ATTR_INT:
			v = json_object_new_int64(a.v.i);
			break;
		case FDN_ATTR_DOUBLE:
			v = json_object_new_double(a.v.d);
			break;
		case FDN_ATTR_BOOL:
			v = json_object_new_boolean(a.v.b);
			break;
		case FDN_ATTR_LIST:
			v = json_object_new_array();
			for (uint32_t k = 0; k < a.v.list.n; k++) {
				const char *it = fdn_attrs_list_item(&a, k);
				json_object_array_add(v, json_object_new_string(it ? it : ""));
			}
			break;
		}
		json_object_object_add(x, "value", v);
		json_object_array_add(as, x);
	}
	json_object_object_add(o, "attributes", as);
	char *t = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return t;
}

void remote_attrs_free(struct remote_attrs *r)
{
	if (r->j)
		json_object_put(r->j);
	r->j = NULL;
	r->n = 0;
}

/* Set (or replace) attribute a in r. */
static void set_attr(struct remote_attrs *r, const struct fdn_attr *a)
{
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->a[i].name, a->name) == 0) {
			r->a[i] = *a;
			return;
		}
	r->a[r->n++] = *a;
}

int json_to_remote_attrs(const char *text, const char *host, struct remote_attrs *r,
			 const char **why)
{
	r->n = 0;
	r->j = json_tokener_parse(text);
	json_object *f, *as, *pid, *ns;
	if (!r->j || !json_object_is_type(r->j, json_type_object)) {
		*why = "not a JSON object";
		return -1;
	}
	if (!json_object_object_get_ex(r->j, "format", &f) ||
	    json_object_get_int(f) != FDN_CLUSTER_FORMAT) {
		*why = "unknown format version";
		return -1;
	}
	if (!json_object_object_get_ex(r->j, "attributes", &as) ||
	    !json_object_is_type(as, json_type_array) ||
	    !json_object_object_get_ex(r->j, "pid", &pid) ||
	    !json_object_object_get_ex(r->j, "registered_ns", &ns)) {
		*why = "attributes, pid or registered_ns missing";
		return -1;
	}
	size_t na = json_object_array_length(as), nitems = 0;
	if (na > sizeof(r->a) / sizeof(r->a[0]) - 4) {
		*why = "too many attributes";
		return -1;
	}
	for (size_t i = 0; i < na; i++) {
		json_object *x = json_object_array_get_idx(as, i), *jn, *jt, *jv;
		if (!json_object_object_get_ex(x, "name", &jn) ||
		    !json_object_object_get_ex(x, "type", &jt) ||
		    !json_object_object_get_ex(x, "value", &jv)) {
			*why = "an attribute without name, type or value";
			return -1;
		}
		struct fdn_attr a = {.name = json_object_get_string(jn)};
		const char *t = json_object_get_string(jt);
		if (strcmp(t, "string") == 0) {
			a.type = FDN_ATTR_STRING;
			a.v.s = json_object_get_string(jv);
		} else if (strcmp(t, "int") == 0) {
			a.type = FDN_ATTR_INT;
			a.v.i = json_object_get_int64(jv);
		} else if (strcmp(t, "double") == 0) {
			a.type = FDN_ATTR_DOUBLE;
			a.v.d = json_object_get_double(jv);
		} else if (strcmp(t, "bool") == 0) {
			a.type = FDN_ATTR_BOOL;
			a.v.b = json_object_get_boolean(jv);
		} else if (strcmp(t, "list") == 0 && json_object_is_type(jv, json_type_array)) {
			size_t k = json_object_array_length(jv);
			if (nitems + k > sizeof(r->items) / sizeof(r->items[0])) {
				*why = "too many list items";
				return -1;
			}
			a.type = FDN_ATTR_LIST;
			a.v.list.items = r->items + nitems;
			a.v.list.n = (uint32_t)k;
			for (size_t m = 0; m < k; m++)
				r->items[nitems++] =
				    json_object_get_string(json_object_array_get_idx(jv, m));
		} else {
			*why = "an attribute of unknown type";
			return -1;
		}
		set_attr(r, &a);
	}
	struct fdn_attr extra[4] = {
	    {.name = "node", .type = FDN_ATTR_STRING, .v.s = host},
	    {.name = "remote", .type = FDN_ATTR_BOOL, .v.b = true},
	    {.name = "remote_pid", .type = FDN_ATTR_INT, .v.i = json_object_get_int64(pid)},
	    {.name = "remote_registered_ns",
	     .type = FDN_ATTR_INT,
	     .v.i = json_object_get_int64(ns)},
	};
	for (int i = 0; i < 4; i++)
		set_attr(r, &extra[i]);
	return 0;
}
