/*
 * foundation-ctl - change a segment from the shell: create and destroy it,
 * register, update and unregister registry entries, wait for a key.
 *
 * Each command attaches, makes one library call and detaches.  Entries
 * registered here belong to the --pid given, not to foundation-ctl: the
 * library claims a process slot for that pid, which the reaper watches, so
 * they stay after this short-lived process detaches and vanish when that pid
 * dies.
 *
 * Exit status: 0 done, 1 the operation failed (one line on stderr,
 * "foundation-ctl: <what>: <why>"), 2 bad usage, bad --attr or --where text
 * included (tools/cli.h has the typed syntax; it is checked before the
 * segment is touched).  --json: the commands that print write one JSON
 * object instead of text; the others refuse it (exit 2).
 *
 * The layout: this file holds the command table, the usage, the option
 * parsing (tools/cli.h's scaffold) and main; each command family is a file
 * of tools/ctl/ (ctl.h says which).  It uses the public API only.
 */
#include "ctl/ctl.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *prog = "foundation-ctl";

/* ---- commands and usage ------------------------------------------------------------- */

#define FLAGS_HELP                                                                     \
	"Feature flags, shared by every process of the segment (seen at their next\n"  \
	"read).  VALUE is on, off or a percentage 0..100 (\"25\" or \"25%\").\n"       \
	"  set NAME VALUE      change a flag (unknown flag, or a percentage outside\n" \
	"                      0..100: exit 1, nothing changed)\n"                     \
	"  get NAME            print its value: on, off or N%\n"                       \
	"  list                print every flag: name, value, default\n"               \
	"  create NAME [VALUE] a user-defined flag (default value off)\n"              \
	"  reset               every flag to its default, the stage to the one at\n"   \
	"                      creation\n"
#define STAGE_HELP                                                                 \
	"Migration stages 0..4; each applies its profile of the built-in flags.\n" \
	"  migrate N           from stage N-1 to N (only one step forward)\n"      \
	"  rollback N          to any lower stage N\n"                             \
	"    --reason R        why (kept in the history; up to 127 bytes)\n"       \
	"  emergency REASON    every built-in flag off, stage 0\n"                 \
	"An invalid move fails with \"invalid stage transition\" (exit 1).\n"
#define ATTR_HELP                                                                       \
	"                       NAME=text     a string (also \"5\", \"true\")\n"        \
	"                       NAME=[a,b]    a list of strings, up to 64 ([] empty)\n" \
	"                       NAME:=5       an integer (64-bit)\n"                    \
	"                       NAME:=1.5     a finite double (1e3 too)\n"              \
	"                       NAME:=true    a boolean (true or false)\n"              \
	"                     anything else after := is refused (exit 2)\n"
#define WHERE_HELP                                                                      \
	"  --where \"NAME=VALUE\"      equal (a string, or [a,b] a list); for a list\n" \
	"                            attribute: contains VALUE\n"                       \
	"  --where \"NAME:=VALUE\"     equal to a typed value (5, 1.5, true)\n"         \
	"  --where \"NAME!=VALUE\"     not equal (an absent attribute is not equal);\n" \
	"          \"NAME!:=VALUE\"    the same with a typed value\n"                   \
	"  --where \"NAME<V\" (<= > >=) an order: between numbers if V is written as\n" \
	"                            one, else between strings\n"                       \
	"  --where \"NAME in a,b\"     one of the items (also [a,b]); for a list\n"     \
	"                            attribute: any element is one of them\n"           \
	"  --where \"NAME not in a,b\" none of them (an absent attribute qualifies)\n"  \
	"Bad criterion text is refused (exit 2).\n"

static const struct command commands[] = {
    {"create", "EPTHMIXVzLS", false, cmd_create, "create [OPTIONS]",
     "Create the segment (it must not exist) and start its reaper.\n"
     "  --entries N      registry sizing (default 100000)\n"
     "  --processes N    process-table slots (default 4096)\n"
     "  --threads N      reader (thread) slots (default 4096)\n"
     "  --spans N        trace slots: threads holding spans or an error context at\n"
     "                   once (default 256; 56 KiB each, touched only when used)\n"
     "  --events N       telemetry ring records, a power of two (default 4096)\n"
     "  --heap BYTES     bytes for keys and values; suffix K, M or G (x 1024...);\n"
     "                   default 256 x entries, at least 1 MiB\n"
     "  --mode OCTAL     file mode; must include 0600 (default 0600)\n"
     "  --indexed LIST   indexed attributes, comma-separated, at most 8; \"\" = none\n"
     "                   (default " FDN_DEFAULT_INDEXED ")\n"
     "  --changes N|off  change-log records, a power of two 16..16777216 (default\n"
     "                   16384, 320 bytes each); off: no change log (watch and\n"
     "                   subscriptions refused)\n"
     "  --sparse         do not reserve the segment's memory now: smaller until\n"
     "                   used, but a full shm filesystem then kills processes\n"
     "                   with SIGBUS (by default create fails instead)\n"
     "The segment is the file $FOUNDATION_SHM_DIR/NAME (default /dev/shm/NAME).\n"},
    {"destroy", "S", false, cmd_destroy, "destroy",
     "Remove the segment's name and stop its reaper.  Attached processes keep\n"
     "their mapping until they detach.\n"},
    {"register", "parUtS", true, cmd_register,
     "register KEY --pid PID [--attr NAME=VALUE ...] [--replace | --cluster-unique "
     "[--timeout MS]]",
     "Register KEY for process PID (which need not be this one: the entry lives\n"
     "until PID dies or it is unregistered).\n"
     "  --pid PID          the owner (required)\n"
     "  --attr NAME=VALUE  an attribute, up to 32, typed as written:\n" ATTR_HELP
     "  --replace          take the key over even if a live process holds it\n"
     "  --cluster-unique   only if no host of the cluster holds KEY: asks the\n"
     "                     local foundation-mirrord (docs/cluster.md), waiting for\n"
     "                     its verdict at most --timeout MS (default 5000)\n"
     "Fails with \"already exists (held by pid N)\" when a live process holds KEY\n"
     "(\"(held by host H, pid N)\" with --cluster-unique).\n"},
    {"unregister", "S", true, cmd_unregister, "unregister KEY", "Remove the entry KEY.\n"},
    {"get", "S", true, cmd_get, "get KEY",
     "Print the entry KEY: key, owner pid, registration time (UTC), attributes;\n"
     "with --json {\"segment\", \"key\", \"pid\", \"registered_ns\", \"attributes\"}.\n"
     "Exit 1 \"not found\" when no live entry has that key.\n"},
    {"query", "wS", false, cmd_query, "query [--where \"NAME OP VALUE\" ...]",
     "Print the entries for which every criterion holds (none: every entry),\n"
     "sorted by key, as foundation-inspect registry does.  Up to 16 --where:\n" WHERE_HELP},
    {"update", "aCS", true, cmd_update, "update KEY --attr NAME=VALUE ... | --clear",
     "Replace all attributes of KEY by the ones given (typed as for register).\n"
     "  --clear  remove every attribute (update without --attr is refused)\n"},
    {"merge", "aS", true, cmd_merge, "merge KEY --attr NAME=VALUE ...",
     "Set the attributes given on KEY (typed as for register), keeping its others.\n"},
    {"sampler", "S", false, cmd_sampler, "sampler set NAME SPEC | sampler reset-stats NAME",
     "set: the sampler of event NAME in every process: always, never, random(P),\n"
     "rate_limited(PER_SECOND), reservoir(N), adaptive(TARGET_PER_SECOND),\n"
     "handlers (to the emitting process's handlers only, no ring record).\n"
     "A bad SPEC is \"invalid sampler\" (exit 1).\n"
     "reset-stats: start NAME's total and sampled counts again from 0 (its sampler\n"
     "unchanged); a name without a sampler is \"not found\" (exit 1).\n"},
    {"emit", "amcS", true, cmd_emit,
     "emit NAME [--measure NAME=NUMBER ...] [--attr NAME=VALUE ...] [--count N]",
     "Emit the event NAME (into the segment's event ring), N times (default 1).\n"
     "  --measure NAME=NUMBER  a measurement, up to 32; NUMBER a finite decimal\n"
     "  --attr NAME=VALUE      an attribute, typed as for register\n"},
    {"wait", "gtS", true, cmd_wait, "wait KEY [--gone] [--timeout MS]",
     "Block until KEY is registered (or, with --gone, no longer visible: unregistered,\n"
     "or its owner died and was reaped).\n"
     "  --gone        wait for KEY to disappear\n"
     "  --timeout MS  give up after MS milliseconds (exit 1); default: no limit\n"},
    {"watch", "FfcS", false, cmd_watch, "watch [--prefix P] [--from REV] [--count N] [--json]",
     "Print the registry's changes as they happen, one line each, until\n"
     "interrupted (SIGINT, SIGTERM, SIGHUP: exit 0):\n"
     "  REVISION KIND pid=PID [death=N] KEY\n"
     "KIND is registered, updated, unregistered or removed (the owner died or\n"
     "detached; death=N: the death's number in the graveyard).  With --json, one\n"
     "object per line: {\"revision\", \"kind\", \"key\", \"pid\", \"time_ns\"[, \"death\"]}.\n"
     "  --prefix P   only keys that begin with P (default: every key)\n"
     "  --from REV   start with the changes after revision REV (default: now)\n"
     "  --count N    exit after N changes\n"
     "Exit 1 if changes to print were overwritten first (the log holds the last\n"
     "`--changes` of create; a --from older than that), or the segment has no\n"
     "change log.\n"},
    {"flags", "S", false, cmd_flags,
     "flags set NAME VALUE | get NAME | list | create NAME [VALUE] | reset", FLAGS_HELP},
    {"stage", "RS", false, cmd_stage,
     "stage migrate N | rollback N [--reason R] | emergency REASON", STAGE_HELP},
    {"reaper", "tS", false, cmd_reaper, "reaper start | stop | status [--timeout MS]",
     "The segment's reaper (foundation-reaperd).\n"
     "  start   lift a stop, start one unless a live reaper holds the lease\n"
     "          ($FOUNDATION_REAPERD, else the one installed beside the library,\n"
     "          else the configured path), wait until one holds it and print its\n"
     "          pid\n"
     "  stop    stop the reaper and keep it stopped: no autostart, no restart by\n"
     "          a writer until `reaper start` (a flag in the segment); wait until\n"
     "          it has released the lease (a reaper too old to see the flag gets\n"
     "          SIGTERM after half the timeout; none running: says so, exit 0)\n"
     "  status  print the reaper's pid; exit 1 if none runs, saying why (stopped,\n"
     "          no program found, exited)\n"
     "  --timeout MS  how long start and stop wait (default 5000)\n"
     "While no reaper runs, dead processes' entries stay until one starts.\n"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

/* ---- usage ---------------------------------------------------------------------- */

static void usage(FILE *f, const void *unused)
{
	fprintf(f, "usage: %s [--segment NAME] [--json] COMMAND [ARGS...]\n\ncommands:\n", prog);
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %s\n", commands[i].synopsis);
	fprintf(f,
		"\n"
		"Change a Foundation segment from the shell.  \"%s COMMAND --help\"\n"
		"describes one command.  A command that changes something prints nothing\n"
		"on success, except create, destroy and reaper start/stop; get, query,\n"
		"flags get, flags list and reaper status print what they find.\n"
		"\n"
		"  --segment NAME  segment (default $FOUNDATION_SEGMENT, else \"foundation\");\n"
		"                  also accepted after the command\n"
		"  --json          one JSON object instead of text, for the commands that\n"
		"                  print (refused by the others); also accepted after the\n"
		"                  command\n"
		"  --help          this text\n"
		"  --version       print the version and exit\n"
		"\n"
		"Exit status: 0 done; 1 the operation failed; 2 bad usage (also bad --attr,\n"
		"--where or number text).\n",
		prog);
}

static void command_usage(FILE *f, const void *ctx)
{
	const struct command *c = ctx;
	fprintf(f, "usage: %s [--segment NAME] %s\n\n%s", prog, c->synopsis, c->help);
}

/* ---- argument parsing ----------------------------------------------------------- */

static const struct option all_opts[] = {
    {"entries", required_argument, 0, 'E'}, {"processes", required_argument, 0, 'P'},
    {"threads", required_argument, 0, 'T'}, {"heap", required_argument, 0, 'H'},
    {"mode", required_argument, 0, 'M'},    {"indexed", required_argument, 0, 'I'},
    {"pid", required_argument, 0, 'p'},     {"attr", required_argument, 0, 'a'},
    {"replace", no_argument, 0, 'r'},       {"gone", no_argument, 0, 'g'},
    {"timeout", required_argument, 0, 't'}, {"segment", required_argument, 0, 'S'},
    {"spans", required_argument, 0, 'X'},   {"events", required_argument, 0, 'V'},
    {"help", no_argument, 0, 'h'},          {"reason", required_argument, 0, 'R'},
    {"measure", required_argument, 0, 'm'}, {"count", required_argument, 0, 'c'},
    {"json", no_argument, 0, 'j'},          {"clear", no_argument, 0, 'C'},
    {"where", required_argument, 0, 'w'},   {"sparse", no_argument, 0, 'z'},
    {"prefix", required_argument, 0, 'F'},  {"from", required_argument, 0, 'f'},
    {"changes", required_argument, 0, 'L'}, {"cluster-unique", no_argument, 0, 'U'},
};

#define NOPTS (sizeof(all_opts) / sizeof(all_opts[0]))

/* BYTES with an optional binary suffix K, M or G. */
static bool parse_bytes(const char *text, uint64_t *out)
{
	char num[32];
	size_t n = strlen(text);
	unsigned shift = 0;
	if (n > 1 && n < sizeof(num) && strchr("kKmMgG", text[n - 1])) {
		const char *sfx = "kKmMgG";
		shift = 10u * (1u + (unsigned)(strchr(sfx, text[n - 1]) - sfx) / 2u);
		memcpy(num, text, n - 1);
		num[n - 1] = 0;
		text = num;
	}
	uint64_t v;
	if (!parse_num(text, 10, UINT64_MAX >> shift, &v))
		return false;
	*out = v << shift;
	return true;
}

/* "--name" of option letter opt. */
static const char *opt_name(int opt)
{
	static char buf[32];
	for (size_t i = 0; i < NOPTS; i++)
		if (all_opts[i].val == opt)
			snprintf(buf, sizeof(buf), "--%s", all_opts[i].name);
	return buf;
}

/* One option's value into a; 0 or EXIT_USAGE. */
static int take_option(const struct command *c, int opt, const char *val, struct args *a)
{
	uint64_t v = 0;
	bool ok = true;
	switch (opt) {
	case 'E':
		ok = parse_num(val, 10, UINT64_MAX, &a->opts.entries);
		break;
	case 'P':
	case 'T':
	case 'X':
	case 'V':
		ok = parse_num(val, 10, UINT32_MAX, &v);
		*(opt == 'P'   ? &a->opts.processes
		  : opt == 'T' ? &a->opts.threads
		  : opt == 'X' ? &a->opts.spans
			       : &a->opts.events) = (uint32_t)v;
		break;
	case 'H':
		ok = parse_bytes(val, &a->opts.heap_bytes);
		break;
	case 'M':
		ok = parse_num(val, 8, 07777, &v);
		a->opts.mode = (uint32_t)v;
		break;
	case 'I':
		a->opts.indexed = val;
		break;
	case 'z':
		a->opts.flags |= FDN_SEG_SPARSE;
		break;
	case 'p':
		ok = parse_num(val, 10, INT32_MAX, &v) && v > 0;
		a->pid = (pid_t)v;
		break;
	case 'a':
		if (a->nattrs == MAX_ATTRS)
			return usage_error(c->name, "%s --attr: at most %d", c->name, MAX_ATTRS);
		a->attr_text[a->nattrs++] = val;
		break;
	case 'r':
		a->replace = true;
		break;
	case 'U':
		a->unique = true;
		break;
	case 'g':
		a->gone = true;
		break;
	case 't':
		ok = parse_num(val, 10, INT64_MAX / 1000000, &v);
		a->timeout_ms = (int64_t)v;
		break;
	case 'S':
		a->segment = val;
		break;
	case 'm':
		if (a->nmeasures == FDN_MEASUREMENTS_MAX)
			return usage_error(c->name, "%s --measure: at most %u", c->name,
					   FDN_MEASUREMENTS_MAX);
		a->measure_text[a->nmeasures++] = val;
		break;
	case 'c':
		ok = parse_num(val, 10, UINT32_MAX, &a->count);
		a->count_set = true;
		break;
	case 'F':
		a->prefix = val;
		break;
	case 'f':
		ok = parse_num(val, 10, UINT64_MAX, &a->from);
		a->from_set = true;
		break;
	case 'L':
		if (strcmp(val, "off") == 0) {
			a->opts.changes = FDN_CHANGES_OFF;
		} else {
			ok = parse_num(val, 10, FDN_CHANGES_MAX, &v) && v >= FDN_CHANGES_MIN &&
			     (v & (v - 1)) == 0;
			a->opts.changes = (uint32_t)v;
		}
		break;
	case 'R':
		a->reason = val;
		break;
	case 'j':
		a->json = true;
		break;
	case 'C':
		a->clear = true;
		break;
	case 'w':
		if (a->nwhere == MAX_WHERE)
			return usage_error(c->name, "%s --where: at most %d", c->name, MAX_WHERE);
		a->where_text[a->nwhere++] = val;
		break;
	}
	if (!ok)
		return usage_error(c->name, "%s %s \"%s\": bad number", c->name, opt_name(opt),
				   val);
	return 0;
}

/* Does the command print on success (and so take --json)? */
static bool prints(const struct command *c, const struct args *a)
{
	if (c->run == cmd_flags)
		return a->nwords == 0 ||
		       (strcmp(a->words[0], "get") == 0 || strcmp(a->words[0], "list") == 0);
	return c->run == cmd_create || c->run == cmd_destroy || c->run == cmd_get ||
	       c->run == cmd_query || c->run == cmd_reaper || c->run == cmd_watch;
}

/* Positional words a command takes after its name (flags, stage). */
static int max_words(const struct command *c)
{
	return c->run == cmd_flags || c->run == cmd_sampler ? 3
	       : c->run == cmd_stage                        ? 2
	       : c->run == cmd_reaper                       ? 1
							    : 0;
}

/* take_option as a cli_take_fn (0 there is CLI_GO_ON here). */
static int take_command_option(void *arg, const void *c, int o, char *val)
{
	int r = take_option(c, o, val, arg);
	return r ? r : CLI_GO_ON;
}

/* Parse a command's arguments (argv[0] is its name).  Returns CLI_GO_ON,
 * else the exit status. */
static int parse_command(const struct command *c, int argc, char **argv, struct args *a)
{
	int status = cli_command_options(argc, argv, c->name, all_opts, NOPTS, "hj", c->allowed,
					 command_usage, take_command_option, a, c);
	if (status != CLI_GO_ON)
		return status;
	while (optind < argc && a->nwords < max_words(c))
		a->words[a->nwords++] = argv[optind++];
	if (c->takes_key && optind < argc)
		a->key = argv[optind++];
	if (optind < argc)
		return usage_error(c->name, "%s \"%s\": unexpected argument", c->name,
				   argv[optind]);
	if (c->takes_key && !a->key)
		return usage_error(c->name, "%s: missing KEY", c->name);
	if (c->run == cmd_register && a->pid == 0)
		return usage_error(c->name, "%s: missing --pid PID", c->name);
	if (c->run == cmd_register && a->unique && a->replace)
		return usage_error(c->name, "%s: --replace and --cluster-unique exclude each other",
				   c->name);
	if (c->run == cmd_register && !a->unique && a->timeout_ms >= 0)
		return usage_error(c->name, "%s --timeout: only with --cluster-unique", c->name);
	if (a->json && !prints(c, a))
		return usage_error(c->name, "%s%s%s --json: prints nothing", c->name,
				   a->nwords ? " " : "", a->nwords ? a->words[0] : "");
	return CLI_GO_ON;
}

int main(int argc, char **argv)
{
	static struct args a = {.timeout_ms = -1};
	fdn_segment_opts_init(&a.opts);
	struct cli_global g = {&a.segment, &a.json};
	const void *cmd;
	int status = cli_program_start(argc, argv, "+:s:h", usage, &g, commands, NCOMMANDS,
				       sizeof(commands[0]), &cmd);
	if (status != CLI_GO_ON)
		return status;
	const struct command *c = cmd;
	status = parse_command(c, argc - optind, argv + optind, &a);
	if (status != CLI_GO_ON)
		return status;
	if ((status = cli_segment_name(&a.segment, c->name)) != CLI_GO_ON)
		return status;
	return c->run(&a);
}
