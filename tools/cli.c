/* tools/cli.c - see cli.h. */
#include "cli.h"

#include <foundation/common.h>
#include <foundation/error.h>
#include <foundation/flags.h>
#include <foundation/reaper.h>
#include <foundation/introspect.h>
#include <foundation/segment.h>

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see %s%s%s --help)\n", prog, cmd ? " " : "", cmd ? cmd : "");
	return EXIT_USAGE;
}

const char *bad_option(char **argv, char *buf, size_t cap)
{
	const char *w = argv[optind - 1];
	if (strncmp(w, "--", 2) == 0)
		snprintf(buf, cap, "%.*s", (int)strcspn(w, "="), w);
	else
		snprintf(buf, cap, "-%c", optopt ? optopt : '?');
	return buf;
}

void options_for(const struct option *all, size_t n, const char *always, const char *allowed,
		 struct option *out)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (strchr(always, all[i].val) || strchr(allowed, all[i].val))
			out[k++] = all[i];
	out[k] = (struct option){0, 0, 0, 0};
}

const char *lower_first(const char *why, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s", why);
	if (buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z'))
		buf[0] = (char)(buf[0] - 'A' + 'a');
	return buf;
}

int print_version(void)
{
	printf("%s %s\n", prog, fdn_version());
	return EXIT_OK;
}

/* The loop of both: cmd NULL for the program's own options. */
static int options(int argc, char **argv, const char *cmd, const char *shortopts,
		   const struct option *longopts, int version, cli_help_fn help, cli_take_fn take,
		   void *arg, const void *ctx)
{
	char buf[64];
	opterr = 0; /* every error is one line of ours */
	for (int o; (o = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1;) {
		if (o == 'h') {
			help(stdout, ctx);
			return EXIT_OK;
		}
		if (version && o == version)
			return print_version();
		if (o == '?' || o == ':')
			return usage_error(cmd, "%s%s%s: %s", cmd ? cmd : "", cmd ? " " : "",
					   bad_option(argv, buf, sizeof(buf)),
					   o == ':' ? "needs a value" : "unknown option");
		int r = take(arg, ctx, o, optarg);
		if (r != CLI_GO_ON)
			return r;
	}
	return CLI_GO_ON;
}

int cli_program_options(int argc, char **argv, const char *shortopts, const struct option *longopts,
			int version, cli_help_fn help, cli_take_fn take, void *arg)
{
	return options(argc, argv, NULL, shortopts, longopts, version, help, take, arg, NULL);
}

int cli_command_options(int argc, char **argv, const char *cmd, const struct option *all, size_t n,
			const char *always, const char *allowed, cli_help_fn help, cli_take_fn take,
			void *arg, const void *ctx)
{
	struct option *lo = calloc(n + 1, sizeof(*lo));
	if (!lo)
		return complain(EXIT_FAIL, fdn_strerror(-ENOMEM), "%s", cmd);
	options_for(all, n, always, allowed, lo);
	optind = 0; /* restart getopt on the command's own arguments */
	int r = options(argc, argv, cmd, ":h", lo, 0, help, take, arg, ctx);
	free(lo);
	return r;
}

unsigned cli_complaints;

int complain(int status, const char *why, const char *fmt, ...)
{
	va_list ap;
	cli_complaints++;
	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	char buf[256];
	fprintf(stderr, ": %s\n", lower_first(why, buf, sizeof(buf)));
	return status;
}

int cli_take_global(void *arg, const void *unused, int o, char *val)
{
	struct cli_global *g = arg;
	if (o == 's')
		*g->segment = val;
	else
		*g->json = true;
	return CLI_GO_ON;
}

int cli_program_start(int argc, char **argv, const char *shortopts, cli_help_fn usage,
		      struct cli_global *g, const void *commands, size_t n, size_t stride,
		      const void **cmd)
{
	static const struct option lo[] = {{"segment", required_argument, 0, 's'},
					   {"json", no_argument, 0, 'j'},
					   {"help", no_argument, 0, 'h'},
					   {"version", no_argument, 0, 'v'},
					   {0, 0, 0, 0}};
	int status = cli_program_options(argc, argv, shortopts, lo, 'v', usage, cli_take_global, g);
	if (status != CLI_GO_ON)
		return status;
	if (optind == argc)
		return usage_error(NULL, "missing COMMAND");
	for (size_t i = 0; i < n; i++) {
		const void *c = (const char *)commands + i * stride;
		if (strcmp(*(const char *const *)c, argv[optind]) == 0) {
			*cmd = c;
			return CLI_GO_ON;
		}
	}
	return usage_error(NULL, "%s: unknown command", argv[optind]);
}

int cli_segment_name(const char **segment, const char *cmd)
{
	if (!*segment)
		*segment = fdn_segment_default_name();
	if (fdn_segment_name_check(*segment))
		return usage_error(cmd, "segment \"%s\": invalid name", *segment);
	return CLI_GO_ON;
}

bool vec_push(struct vec *vec, const void *item, size_t size)
{
	if (!grow(&vec->v, &vec->cap, vec->n, size))
		return false;
	memcpy((char *)vec->v + vec->n++ * size, item, size);
	return true;
}

bool grow(void *v, size_t *cap, size_t n, size_t elem)
{
	if (n < *cap)
		return true;
	size_t c = *cap ? 2 * *cap : 64;
	void *p = realloc(*(void **)v, c * elem);
	if (!p)
		return false;
	*(void **)v = p;
	*cap = c;
	return true;
}

const char *flag_text(int v, char *buf, size_t cap)
{
	if (v == FDN_FLAG_ON)
		return "on";
	if (v == FDN_FLAG_OFF)
		return "off";
	snprintf(buf, cap, "%d%%", v);
	return buf;
}

/* ---- numbers ------------------------------------------------------------------ */

/* An unsigned decimal (or octal, base 8) number up to max, the whole text. */
bool parse_num(const char *text, int base, uint64_t max, uint64_t *out)
{
	char *end;
	if (text[0] < '0' || text[0] > '9')
		return false;
	errno = 0;
	unsigned long long v = strtoull(text, &end, base);
	if (errno || *end || v > max)
		return false;
	*out = v;
	return true;
}

/* [-]DIGITS: a signed 64-bit integer, the whole text. */
static bool int_text(const char *text, bool *range, int64_t *out)
{
	const char *d = text + (text[0] == '-');
	char *end;
	*range = false;
	if (d[0] < '0' || d[0] > '9' || d[strspn(d, "0123456789")] != '\0')
		return false;
	errno = 0;
	long long v = strtoll(text, &end, 10);
	if (errno == ERANGE) {
		*range = true;
		return false;
	}
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

/* [-]DIGITS[.DIGITS][e[+-]DIGITS] (or .DIGITS): finite.  *range when it
 * is a number the double cannot hold (1e999). */
static bool double_text(const char *text, bool *range, double *out)
{
	const char *p = text + (text[0] == '-');
	size_t ip = strspn(p, "0123456789"), fp = 0;
	*range = false;
	if (p[ip] == '.')
		fp = strspn(p + ip + 1, "0123456789");
	if (ip + fp == 0)
		return false;
	p += ip + (p[ip] == '.' ? 1 + fp : 0);
	if (*p == 'e' || *p == 'E') {
		p++;
		p += *p == '+' || *p == '-';
		size_t ep = strspn(p, "0123456789");
		if (ep == 0)
			return false;
		p += ep;
	}
	if (*p != '\0')
		return false;
	char *end;
	errno = 0;
	double d = strtod(text, &end);
	if (*end)
		return false;
	if (errno == ERANGE || !isfinite(d)) {
		/* underflow to 0 or a denormal is still the number written */
		if (isfinite(d) && fabs(d) < 1.0) {
			*out = d;
			return true;
		}
		*range = true;
		return false;
	}
	*out = d;
	return true;
}

bool parse_double(const char *text, double *out)
{
	bool range;
	return double_text(text, &range, out);
}

/* ---- typed attributes and criteria ------------------------------------------------- */

/* "[a,b,c]" (or, with brackets optional, "a,b,c") as a list; items point
 * into s, which is cut in place.  NULL or why not. */
static const char *list_text(char *s, bool brackets, struct fdn_attr *out, const char **items,
			     uint32_t cap)
{
	size_t len = strlen(s);
	bool bracketed = s[0] == '[';
	if (brackets || bracketed) {
		if (!bracketed || len < 2 || s[len - 1] != ']')
			return "a list is [ITEM,...], closed by ]";
		s[len - 1] = '\0';
		s++;
	} else if (*s == '\0') {
		return "empty list";
	}
	uint32_t n = 0;
	for (char *q = s; *s;) {
		char *comma = strchr(q, ',');
		if (comma)
			*comma = '\0';
		if (*q == '\0')
			return "empty list item";
		if (strlen(q) > FDN_ATTR_STRING_MAX)
			return "list item longer than 1024 bytes";
		if (n == cap || n == FDN_ATTR_LIST_MAX)
			return "more than 64 list items";
		items[n++] = q;
		if (!comma)
			break;
		q = comma + 1;
	}
	out->type = FDN_ATTR_LIST;
	out->v.list.items = items;
	out->v.list.n = n;
	return NULL;
}

/* The value after ":=": an integer, a finite double, true or false. */
static const char *typed_text(const char *v, struct fdn_attr *out)
{
	bool range;
	if (strcmp(v, "true") == 0 || strcmp(v, "false") == 0) {
		out->type = FDN_ATTR_BOOL;
		out->v.b = v[0] == 't';
		return NULL;
	}
	if (int_text(v, &range, &out->v.i)) {
		out->type = FDN_ATTR_INT;
		return NULL;
	}
	if (range)
		return "integer out of range (64-bit signed)";
	if (double_text(v, &range, &out->v.d)) {
		out->type = FDN_ATTR_DOUBLE;
		return NULL;
	}
	if (range)
		return "number out of range of a double";
	return "after := an integer, a number or true/false";
}

/* The value after "=": a list if it starts with [, else a string. */
static const char *plain_text(char *v, struct fdn_attr *out, const char **items, uint32_t cap)
{
	if (v[0] == '[')
		return list_text(v, true, out, items, cap);
	if (strlen(v) > FDN_ATTR_STRING_MAX)
		return "string longer than 1024 bytes";
	out->type = FDN_ATTR_STRING;
	out->v.s = v;
	return NULL;
}

static const char *name_text(const char *name, size_t len)
{
	if (len == 0)
		return "missing attribute name";
	if (len > FDN_ATTR_NAME_MAX)
		return "attribute name longer than 63 bytes";
	return NULL;
}

const char *attr_parse(char *text, struct fdn_attr *out, const char **items, uint32_t cap)
{
	char *eq = strchr(text, '=');
	if (!eq)
		return "expected NAME=VALUE or NAME:=VALUE";
	bool typed = eq > text && eq[-1] == ':';
	char *name_end = typed ? eq - 1 : eq;
	const char *why = name_text(text, (size_t)(name_end - text));
	if (why)
		return why;
	memset(out, 0, sizeof(*out));
	why = typed ? typed_text(eq + 1, out) : plain_text(eq + 1, out, items, cap);
	if (why)
		return why;
	*name_end = '\0';
	out->name = text;
	return NULL;
}

const char *where_parse(char *text, struct fdn_criterion *out, const char **items, uint32_t cap)
{
	static const struct {
		const char *op;
		enum fdn_cmp cmp;
		bool typed;
	} ops[] = {
	    {" not in ", FDN_CMP_NOT_IN, false},
	    {" in ", FDN_CMP_IN, false},
	    {"!:=", FDN_CMP_NEQ, true},
	    {":=", FDN_CMP_EQ, true},
	    {"!=", FDN_CMP_NEQ, false},
	    {"<=", FDN_CMP_LTE, false},
	    {">=", FDN_CMP_GTE, false},
	    {"<", FDN_CMP_LT, false},
	    {">", FDN_CMP_GT, false},
	    {"=", FDN_CMP_EQ, false},
	};
	/* The name ends at the first operator character or space. */
	size_t nlen = strcspn(text, " !:=<>");
	const char *why = name_text(text, nlen);
	if (why)
		return why;
	char *rest = text + nlen;
	size_t k = 0, nops = sizeof(ops) / sizeof(ops[0]);
	while (k < nops && strncmp(rest, ops[k].op, strlen(ops[k].op)) != 0)
		k++;
	if (k == nops)
		return "expected NAME OP VALUE, OP one of = := != !:= < <= > >= in, not in";
	char *v = rest + strlen(ops[k].op);
	memset(out, 0, sizeof(*out));
	out->op = ops[k].cmp;
	if (ops[k].cmp == FDN_CMP_IN || ops[k].cmp == FDN_CMP_NOT_IN) {
		why = list_text(v, false, &out->value, items, cap);
	} else if (ops[k].typed) {
		why = typed_text(v, &out->value);
	} else if (ops[k].cmp == FDN_CMP_EQ || ops[k].cmp == FDN_CMP_NEQ) {
		why = plain_text(v, &out->value, items, cap);
	} else {
		/* an order: between numbers if VALUE is one, else strings */
		bool range;
		if (int_text(v, &range, &out->value.v.i))
			out->value.type = FDN_ATTR_INT;
		else if (!range && double_text(v, &range, &out->value.v.d))
			out->value.type = FDN_ATTR_DOUBLE;
		else if (range)
			why = "number out of range";
		else
			why = plain_text(v, &out->value, items, cap);
		if (!why && out->value.type == FDN_ATTR_LIST)
			why = "< <= > >= compare with a number or a string, not a list";
	}
	if (why)
		return why;
	text[nlen] = '\0';
	out->name = text;
	return NULL;
}

/* ---- text and JSON output ---------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p (n bytes left), 0 if none. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	size_t len = p[0] < 0x80                    ? 1
		     : p[0] >= 0xC2 && p[0] <= 0xDF ? 2
		     : p[0] >= 0xE0 && p[0] <= 0xEF ? 3
		     : p[0] >= 0xF0 && p[0] <= 0xF4 ? 4
						    : 0;
	if (len == 0 || len > n)
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((p[i] & 0xC0) != 0x80)
			return 0;
	/* No overlong forms, no surrogates, nothing above U+10FFFF. */
	if ((p[0] == 0xE0 && p[1] < 0xA0) || (p[0] == 0xED && p[1] > 0x9F) ||
	    (p[0] == 0xF0 && p[1] < 0x90) || (p[0] == 0xF4 && p[1] > 0x8F))
		return 0;
	return len;
}

/* Bytes as a JSON string (see the top of the file), or for a text table:
 * the same bytes escaped as \xNN, backslash doubled.  Valid UTF-8 passes. */
static void put_bytes(FILE *f, const void *data, size_t n, bool json)
{
	const unsigned char *p = data;
	if (json)
		putc('"', f);
	for (size_t i = 0; i < n;) {
		size_t len = utf8_len(p + i, n - i);
		if (len > 1) {
			fwrite(p + i, 1, len, f);
			i += len;
			continue;
		}
		unsigned char c = p[i++];
		if (c == '\\' || (json && c == '"'))
			fprintf(f, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(f, json ? "\\u%04x" : "\\x%02x", c);
		else
			putc(c, f);
	}
	if (json)
		putc('"', f);
}

void json_str(FILE *f, const void *data, size_t n)
{
	put_bytes(f, data, n, true);
}

void json_cstr(FILE *f, const char *s)
{
	json_str(f, s, strlen(s));
}

void text_str(FILE *f, const void *data, size_t n)
{
	put_bytes(f, data, n, false);
}

/* A double that reads back as a double (%.17g, ".0" added to integers). */
void json_double(FILE *f, double d)
{
	char buf[40];
	snprintf(buf, sizeof(buf), "%.17g", d);
	fprintf(f, "%s%s", buf, strpbrk(buf, ".e") ? "" : ".0");
}

/* ISO-8601 UTC with milliseconds; "-" for 0. */
const char *iso_time(uint64_t ns, char *buf, size_t cap)
{
	struct tm tm;
	time_t t = (time_t)(ns / 1000000000u);
	if (ns == 0 || !gmtime_r(&t, &tm)) {
		snprintf(buf, cap, "-");
		return buf;
	}
	size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, cap - n, ".%03uZ", (unsigned)(ns / 1000000u % 1000u));
	return buf;
}

const char *reaper_why(const struct fdn_reaper_status *st, char *buf, size_t cap)
{
	char when[40];
	iso_time(st->last_ns, when, sizeof(when));
	if (st->pid)
		snprintf(buf, cap, "pid %d holds the lease", (int)st->pid);
	else if (st->stopped)
		snprintf(buf, cap,
			 "stopped by `foundation-ctl reaper stop`: none starts until "
			 "`foundation-ctl reaper start`");
	else if (st->last_pid && st->last_error)
		snprintf(buf, cap, "pid %d could not start one at %s: %s", (int)st->last_pid, when,
			 fdn_strerror(st->last_error));
	else if (st->last_pid)
		snprintf(buf, cap,
			 "the one pid %d started at %s is not running (it exited, or could not "
			 "attach: foundation-reaperd --foreground --verbose shows why); a "
			 "writer starts another within a second of its next write",
			 (int)st->last_pid, when);
	else
		snprintf(buf, cap,
			 "the library never started one (its writers run with "
			 "FOUNDATION_NO_AUTOREAPER=1, or are builds that do not record it)");
	return buf;
}

/* One attribute's value: JSON, or text (lists as [a,b]). */
void attr_value(FILE *f, const struct fdn_attr *a, bool json)
{
	void (*str)(FILE *, const void *, size_t) = json ? json_str : text_str;
	switch (a->type) {
	case FDN_ATTR_STRING:
		str(f, a->v.s, strlen(a->v.s));
		break;
	case FDN_ATTR_INT:
		fprintf(f, "%" PRId64, a->v.i);
		break;
	case FDN_ATTR_DOUBLE:
		if (json)
			json_double(f, a->v.d);
		else
			fprintf(f, "%.15g", a->v.d);
		break;
	case FDN_ATTR_BOOL:
		fputs(a->v.b ? "true" : "false", f);
		break;
	case FDN_ATTR_LIST:
		putc('[', f);
		for (uint32_t k = 0; k < a->v.list.n; k++) {
			const char *item = fdn_attrs_list_item(a, k);
			if (k)
				putc(',', f);
			str(f, item ? item : "", item ? strlen(item) : 0);
		}
		putc(']', f);
		break;
	}
}

/* An encoded attribute set: {"k":v,...} or k=v,k=v. */
void attr_set(FILE *f, const void *attrs, size_t len, bool json)
{
	uint32_t n = fdn_attrs_count(attrs, len);
	if (json)
		putc('{', f);
	for (uint32_t i = 0; i < n; i++) {
		struct fdn_attr a;
		if (fdn_attrs_at(attrs, len, i, &a))
			continue;
		if (i)
			putc(',', f);
		if (json) {
			json_cstr(f, a.name);
			putc(':', f);
		} else {
			text_str(f, a.name, strlen(a.name));
			putc('=', f);
		}
		attr_value(f, &a, json);
	}
	if (json)
		putc('}', f);
}

/* ---- aligned tables ------------------------------------------------------------- */

static void cell_add(struct table *t, char *cell)
{
	if (!cell || t->oom) {
		t->oom = true;
		free(cell);
		return;
	}
	if (t->n == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 64;
		char **c = realloc(t->cells, cap * sizeof(*c));
		if (!c) {
			t->oom = true;
			free(cell);
			return;
		}
		t->cells = c;
		t->cap = cap;
	}
	t->cells[t->n++] = cell;
}

void cellf(struct table *t, const char *fmt, ...)
{
	va_list ap;
	char *cell = NULL;
	va_start(ap, fmt);
	if (vasprintf(&cell, fmt, ap) < 0)
		cell = NULL;
	va_end(ap);
	cell_add(t, cell);
}

/* A cell written through a stream (escaped text, attribute sets). */
FILE *cell_open(char **buf, size_t *len)
{
	*buf = NULL;
	return open_memstream(buf, len);
}

void cell_close(struct table *t, FILE *f, char **buf)
{
	/* The stream publishes its buffer at fclose. */
	if (!f || fclose(f) != 0) {
		t->oom = true;
		return;
	}
	cell_add(t, *buf);
}

/* Display width: code points (cells hold valid UTF-8 only). */
static size_t width(const char *s)
{
	size_t w = 0;
	for (; *s; s++)
		w += ((unsigned char)*s & 0xC0) != 0x80;
	return w;
}

static void table_print(FILE *out, const struct table *t)
{
	size_t *w = calloc(t->ncol, sizeof(*w));
	if (!w)
		return;
	for (size_t i = 0; i < t->n; i++)
		if (width(t->cells[i]) > w[i % t->ncol])
			w[i % t->ncol] = width(t->cells[i]);
	for (size_t i = 0; i < t->n; i++) {
		size_t col = i % t->ncol, pad = w[col] - width(t->cells[i]);
		bool last = col == t->ncol - 1;
		if (t->align[col] == 'r')
			fprintf(out, "%*s", (int)pad, "");
		fputs(t->cells[i], out);
		if (!last && t->align[col] != 'r')
			fprintf(out, "%*s", (int)pad, "");
		fputs(last ? "\n" : "  ", out);
	}
	free(w);
}

void table_free(struct table *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->cells[i]);
	free(t->cells);
}

/* Print (or fail with ENOMEM), then free. */
int table_done(FILE *out, struct table *t)
{
	int status = EXIT_OK;
	if (t->oom) {
		fprintf(stderr, "%s: output: %s\n", prog, fdn_strerror(-ENOMEM));
		status = EXIT_FAIL;
	} else
		table_print(out, t);
	table_free(t);
	return status;
}

void rows_free(struct rows *rs)
{
	for (size_t i = 0; i < rs->n; i++) {
		free(rs->v[i].key);
		free(rs->v[i].attrs);
	}
	free(rs->v);
}

/* Copy one entry out of the segment (callback of foreach / find). */
int rows_collect(void *arg, const struct fdn_entry_view *e)
{
	struct rows *rs = arg;
	size_t plen = rs->prefix ? strlen(rs->prefix) : 0;
	if (plen && (e->key_len < plen || memcmp(e->key, rs->prefix, plen) != 0))
		return 0;
	if (!grow(&rs->v, &rs->cap, rs->n, sizeof(*rs->v)))
		return -ENOMEM;
	struct row r = {malloc(e->key_len + 1u),
			e->key_len,
			e->pid,
			e->registered_ns,
			malloc(e->attrs_len ? e->attrs_len : 1u),
			e->attrs_len};
	if (!r.key || !r.attrs) {
		free(r.key);
		free(r.attrs);
		return -ENOMEM;
	}
	memcpy(r.key, e->key, e->key_len);
	r.key[e->key_len] = 0;
	memcpy(r.attrs, e->attrs, e->attrs_len);
	/* Read without a grace period: the copy may be torn; drop it if so. */
	if (fdn_attrs_validate(r.attrs, r.attrs_len) != 0) {
		free(r.key);
		free(r.attrs);
		return 0;
	}
	rs->v[rs->n++] = r;
	return 0;
}

int row_cmp(const void *pa, const void *pb)
{
	const struct row *a = pa, *b = pb;
	uint32_t n = a->key_len < b->key_len ? a->key_len : b->key_len;
	int c = memcmp(a->key, b->key, n);
	return c ? c : (a->key_len > b->key_len) - (a->key_len < b->key_len);
}

void rows_json(FILE *out, const char *segment, const struct rows *rs)
{
	fprintf(out, "{\"segment\":");
	json_cstr(out, segment);
	fprintf(out, ",\"entries\":[");
	for (size_t i = 0; i < rs->n; i++) {
		const struct row *r = &rs->v[i];
		fprintf(out, "%s\n  {\"key\":", i ? "," : "");
		json_str(out, r->key, r->key_len);
		fprintf(out,
			",\"pid\":%d,\"registered_ns\":%" PRIu64 ",\"attributes\":", (int)r->pid,
			r->registered_ns);
		attr_set(out, r->attrs, r->attrs_len, true);
		fputc('}', out);
	}
	fprintf(out, "%s],\"count\":%zu}\n", rs->n ? "\n" : "", rs->n);
}

int rows_text(FILE *out, const struct rows *rs)
{
	struct table t = {.ncol = 4, .align = "lrll"};
	char buf[40], *cell;
	size_t len;
	cellf(&t, "KEY");
	cellf(&t, "PID");
	cellf(&t, "REGISTERED");
	cellf(&t, "ATTRIBUTES");
	for (size_t i = 0; i < rs->n; i++) {
		const struct row *r = &rs->v[i];
		FILE *f = cell_open(&cell, &len);
		if (f)
			text_str(f, r->key, r->key_len);
		cell_close(&t, f, &cell);
		cellf(&t, "%d", (int)r->pid);
		cellf(&t, "%s", iso_time(r->registered_ns, buf, sizeof(buf)));
		if (fdn_attrs_count(r->attrs, r->attrs_len) == 0) {
			cellf(&t, "-");
			continue;
		}
		f = cell_open(&cell, &len);
		if (f)
			attr_set(f, r->attrs, r->attrs_len, false);
		cell_close(&t, f, &cell);
	}
	return table_done(out, &t);
}

const char *attach_why(const char *segment, int r, char *buf, size_t cap)
{
	unsigned ma, mi;
	if ((r == FDN_EVERSION || r == FDN_ELAYOUT) && fdn_segment_format(segment, &ma, &mi) == 0) {
		snprintf(buf, cap,
			 "%s: made in format %u.%u, this build reads format %u.x: stop its "
			 "processes, destroy and re-create it (docs/operations.md)",
			 fdn_strerror(r), ma, mi, (unsigned)FDN_SEGMENT_FORMAT_MAJOR);
		return buf;
	}
	return fdn_strerror(r);
}
