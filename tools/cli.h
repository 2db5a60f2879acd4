/*
 * tools/cli.h - the command-line scaffold of foundation-reaperd,
 * foundation-ctl, foundation-inspect and foundation-demo (foundation-mirrord
 * uses its pieces too): the option loop (--help, --version), one-line usage
 * errors, the option getopt rejected, the options a command accepts, the
 * one number parser, the typed attribute and criterion syntax, and the text
 * and JSON output (escaping, attribute sets, aligned tables, registry
 * rows), each writer taking the FILE * it writes to.
 * Exit status: 0 done, 1 failed, 2 bad usage.
 */
#ifndef FDN_TOOLS_CLI_H
#define FDN_TOOLS_CLI_H

#include <foundation/attrs.h>
#include <foundation/registry.h>
#include <foundation/segment.h>

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

/* The program's name in every message (set by main). */
extern const char *prog;

/* A usage error: one line "prog: what: why (see prog [cmd] --help)";
 * returns EXIT_USAGE. */
__attribute__((format(printf, 2, 3))) int usage_error(const char *cmd, const char *fmt, ...);

/* The option getopt_long rejected, as the user wrote it. */
const char *bad_option(char **argv, char *buf, size_t cap);

/* Of the n options in all, those whose letter is in `always` or `allowed`,
 * then a terminating zero entry, into out (room for n + 1). */
void options_for(const struct option *all, size_t n, const char *always, const char *allowed,
		 struct option *out);

/* Messages are lower-case: why (strerror's "No such process") with its
 * first letter lowered, unless it starts an acronym; into buf. */
const char *lower_first(const char *why, char *buf, size_t cap);

/* Why attaching `segment` failed with r: fdn_strerror(r), or for another
 * format both formats and what to do (into buf). */
const char *attach_why(const char *segment, int r, char *buf, size_t cap);

/* --version: "PROG VERSION" on stdout; returns EXIT_OK. */
int print_version(void);

/*
 * ---- the option loop: every program's, and every command's ---------------------
 *
 * getopt_long over argv with getopt's own messages off.  -h/--help prints
 * help(stdout, ctx) and ends with EXIT_OK; the option whose value is
 * `version` (--version) prints "PROG VERSION" and ends with EXIT_OK; an
 * unknown option or one missing its value is a usage error (one line,
 * EXIT_USAGE): "PROG [CMD ]OPTION: unknown option (see PROG [CMD] --help)".
 * Every other option goes to take(arg, ctx, option, value), which returns
 * CLI_GO_ON or an exit status that ends the loop.  Both return CLI_GO_ON
 * when every option is read (the operands start at optind), else the exit
 * status.
 */
#define CLI_GO_ON (-1)

typedef void (*cli_help_fn)(FILE *f, const void *ctx);
typedef int (*cli_take_fn)(void *arg, const void *ctx, int option, char *value);

/* The program's own options, before any command (shortopts: getopt_long's,
 * ":" first, after a "+" to stop at the command); version: --version's
 * value, 0 for none. */
int cli_program_options(int argc, char **argv, const char *shortopts, const struct option *longopts,
			int version, cli_help_fn help, cli_take_fn take, void *arg);

/* A command's options (argv[0] is the command, cmd its name in messages):
 * those of the n in all whose letter is in always or allowed, parsed
 * afresh (optind = 0); ctx (the command) goes to help and take. */
int cli_command_options(int argc, char **argv, const char *cmd, const struct option *all, size_t n,
			const char *always, const char *allowed, cli_help_fn help, cli_take_fn take,
			void *arg, const void *ctx);

/* One error line on stderr, "PROG: WHAT: why" (why with its first letter
 * lowered), counted in cli_complaints; returns status. */
__attribute__((format(printf, 3, 4))) int complain(int status, const char *why, const char *fmt,
						   ...);
extern unsigned cli_complaints;

/* --segment NAME (-s) and --json (-j), the options foundation-ctl and
 * foundation-inspect take before the command: a cli_take_fn whose arg is a
 * struct cli_global. */
struct cli_global {
	const char **segment;
	bool *json;
};
int cli_take_global(void *arg, const void *unused, int option, char *value);

/* The start of a program of commands (foundation-ctl, -inspect): its own
 * options, --segment, --json, --help and --version (shortopts as
 * cli_program_options's; usage is --help's text), then the command word:
 * *cmd, the one of the n commands named so (each stride bytes, starting
 * with its name, a const char *).  CLI_GO_ON (optind at the command word),
 * else the exit status. */
int cli_program_start(int argc, char **argv, const char *shortopts, cli_help_fn usage,
		      struct cli_global *g, const void *commands, size_t n, size_t stride,
		      const void **cmd);

/* After the options of command cmd: *segment, or the default name, and
 * checked.  CLI_GO_ON, or EXIT_USAGE for an invalid name. */
int cli_segment_name(const char **segment, const char *cmd);

/* Grow the array *v (of elem-byte items, n used, *cap room) so that one more
 * fits: doubles, from 64; false (nothing changed) when out of memory. */
bool grow(void *v, size_t *cap, size_t n, size_t elem);

/* An array of items copied out of a walk's callbacks: vec_push appends the
 * size bytes at item (false when out of memory); free(v) when done. */
struct vec {
	void *v;
	size_t n, cap;
};
bool vec_push(struct vec *vec, const void *item, size_t size);

/* ---- numbers: every number a user types goes through these -------------------- */

/* An unsigned decimal (or octal, base 8) number up to max, the whole text
 * (no sign, no space, no suffix). */
bool parse_num(const char *text, int base, uint64_t max, uint64_t *out);

/* A finite decimal number, the whole text: [-]DIGITS[.DIGITS][e[+-]DIGITS]
 * (no space, hex, inf or nan; 1e999 refused). */
bool parse_double(const char *text, double *out);

/*
 * ---- typed attributes (--attr) and criteria (--where) ---------------------------
 *
 * An attribute is NAME=VALUE or NAME:=VALUE, typed by how it is written,
 * never guessed:
 *   NAME=text        a string (also "5" or "true")
 *   NAME=[a,b,c]     a list of strings ([] empty; no empty item)
 *   NAME:=5          an integer (64-bit signed)
 *   NAME:=1.5        a finite double (also 1e3)
 *   NAME:=true       a boolean (true or false)
 * Anything else after := (5x, 1e999, 99999999999999999999) is an error.
 *
 * A criterion is NAME OP VALUE:
 *   NAME=VALUE NAME!=VALUE     equal / not equal, VALUE as after = above
 *   NAME:=VALUE NAME!:=VALUE   equal / not equal, VALUE as after := above
 *   NAME<V NAME<=V NAME>V NAME>=V   an order: V a number if written as one,
 *                              else a string
 *   "NAME in a,b" "NAME not in a,b"   one of the items (brackets optional)
 * The parsers cut text in place (names and strings point into it; list
 * items go to items[0..cap)); they return NULL, or why the text is bad.
 */
const char *attr_parse(char *text, struct fdn_attr *out, const char **items, uint32_t cap);
const char *where_parse(char *text, struct fdn_criterion *out, const char **items, uint32_t cap);

/*
 * ---- output -------------------------------------------------------------------
 *
 * JSON strings: quote, backslash and control characters (below 0x20, and
 * 0x7f) are written as \" \\ and \u00XX; valid UTF-8 passes through;
 * every byte that is not part of a valid UTF-8 sequence is \u00XX (its
 * Latin-1 reading).  Text output escapes the same bytes as \xNN.
 */
void json_str(FILE *f, const void *data, size_t n);
void json_cstr(FILE *f, const char *s);
void text_str(FILE *f, const void *data, size_t n);
/* A double that reads back as a double (%.17g, ".0" added to integers). */
void json_double(FILE *f, double d);
/* ISO-8601 UTC with milliseconds; "-" for 0. */
const char *iso_time(uint64_t ns, char *buf, size_t cap);

/* Why no reaper runs (or who does), one sentence from what the segment
 * records: `foundation-inspect stats`, `foundation-ctl reaper status`. */
struct fdn_reaper_status;
const char *reaper_why(const struct fdn_reaper_status *st, char *buf, size_t cap);
/* A flag's value (foundation/flags.h): "on", "off" or "N%" (into buf). */
const char *flag_text(int v, char *buf, size_t cap);
/* One attribute's value: JSON, or text (lists as [a,b]). */
void attr_value(FILE *f, const struct fdn_attr *a, bool json);
/* An encoded attribute set: {"k":v,...} or k=v,k=v. */
void attr_set(FILE *f, const void *attrs, size_t len, bool json);

/* An aligned table: cells added row by row, the header row first. */
struct table {
	size_t ncol;
	const char *align; /* per column: 'l' or 'r' */
	char **cells;      /* row-major, header row first */
	size_t n, cap;
	bool oom;
};

__attribute__((format(printf, 2, 3))) void cellf(struct table *t, const char *fmt, ...);
/* A cell written through a stream (escaped text, attribute sets). */
FILE *cell_open(char **buf, size_t *len);
void cell_close(struct table *t, FILE *f, char **buf);
/* Free without printing. */
void table_free(struct table *t);
/* Print to out (or fail with ENOMEM: one line on stderr, EXIT_FAIL), then free. */
int table_done(FILE *out, struct table *t);

/* Registry entries copied out of the segment (rows_collect is an
 * fdn_entry_cb; with prefix set, only keys that start with it). */
struct row {
	char *key;
	uint32_t key_len;
	pid_t pid;
	uint64_t registered_ns;
	unsigned char *attrs;
	uint32_t attrs_len;
};

struct rows {
	struct row *v;
	size_t n, cap;
	const char *prefix;
};

void rows_free(struct rows *rs);
int rows_collect(void *arg, const struct fdn_entry_view *e);
/* Sort by key (qsort). */
int row_cmp(const void *pa, const void *pb);
/* {"segment":S,"entries":[{key,pid,registered_ns,attributes}...],"count":N} */
void rows_json(FILE *out, const char *segment, const struct rows *rs);
/* KEY PID REGISTERED ATTRIBUTES, aligned. */
int rows_text(FILE *out, const struct rows *rs);

#endif
