/*
 * foundation-inspect - look at a segment without touching it: registry
 * entries, process slots, the graveyard, usage statistics, the integrity
 * check; as aligned text or as JSON (--json).
 *
 * It attaches with FDN_SEG_READONLY only: the mapping is read-only, no
 * process or reader slot is taken, nothing is ever written, and no reaper is
 * started.  Read-only reads take no grace period, so what a callback copies
 * is validated again before it is printed.
 *
 * JSON strings.  Quote, backslash and control characters (below 0x20, and
 * 0x7f) are written as \" \\ and \u00XX.  Valid UTF-8 passes through as it
 * is; every byte that is not part of a valid UTF-8 sequence (keys may hold
 * any byte) is written as \u00XX, the code point of the same value (as if it
 * were Latin-1).  Text output escapes the same bytes as \xNN.
 *
 * Exit status: 0 done; 1 an error (one line on stderr,
 * "foundation-inspect: <what>: <why>") or a failed check; 2 bad usage.
 *
 * The layout: this file holds the command table, the usage, the option
 * parsing (tools/cli.h's scaffold) and main; each command family is a file
 * of tools/inspect/ (inspect.h says which), writing to the FILE * its
 * arguments carry (struct args.out: stdout, or memory for dump and the
 * metrics server).  It uses the public API only (foundation/introspect.h
 * for the process table, the indexed attributes and the mapping).
 */
#include "inspect/inspect.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

const char *prog = "foundation-inspect";

/* ---- commands and usage ------------------------------------------------------------- */

const struct command commands[] = {
    {"registry", "ap", cmd_registry, "registry [--attr NAME=VALUE] [--prefix P]",
     "Visible registry entries, sorted by key: key, owner pid, registration time\n"
     "(UTC) and attributes.\n"
     "  --attr NAME=VALUE  only entries whose attribute NAME equals VALUE (a list\n"
     "                     attribute: contains it); typed as foundation-ctl's\n"
     "                     --attr: NAME=text a string, NAME=[a,b] a list,\n"
     "                     NAME:=5 / :=1.5 / :=true a number or boolean\n"
     "  --prefix P         only keys that start with P\n"},
    {"processes", "", cmd_processes, "processes",
     "Every process slot in use: slot, pid, state (live, or dead and awaiting the\n"
     "reaper), identity, uid, attach time, reader slots it holds, and the pid that\n"
     "claimed it (another process when it registered for this pid).\n"},
    {"spans", "P", cmd_spans, "spans [--pid P]",
     "Every thread holding spans or an error context, from a consistent copy of\n"
     "its trace slot: its open spans bottom first (depth, name, trace id, span\n"
     "id, parent, age, attributes), its correlation and operation ids, context\n"
     "map and newest breadcrumbs.\n"
     "  --pid P  only the threads of process P\n"},
    {"graveyard", "P", cmd_graveyard, "graveyard [--pid P]",
     "The deaths the reaper has recorded, newest first: pid, the signal that\n"
     "killed it or its exit status, when it was seen, how long its entries took\n"
     "to disappear, and how many entries were removed.  Then what the dead\n"
     "threads were doing: their open spans (status aborted, duration up to the\n"
     "death) and error contexts, copied by the reaper before it freed them; the\n"
     "newest 64 thread copies are kept.\n"
     "  --pid P  only the deaths and threads of process P\n"},
    {"stats", "", cmd_stats, "stats",
     "Capacities and usage: processes, reader slots, heap, tables (entries,\n"
     "buckets, load factor), the grace-period counter, the reaper's pid, the\n"
     "number of deaths reaped, and the change log (revision, subscribers,\n"
     "overruns).\n"},
    {"events", "fnct", cmd_events, "events [--follow] [--name PREFIX] [--count N] [--timeout S]",
     "The telemetry ring, oldest event first: time (UTC), pid, tid, the producing\n"
     "thread's event number, name, measurements, attributes.  Reports events lost\n"
     "to overwriting (the ring keeps the newest) as \"lost N events\".\n"
     "  --follow         then print each new event as it is written, one line each\n"
     "                   (with --json one object per line, then {\"lost\":N,...} for\n"
     "                   a gap and {\"end\":...} last); ends on SIGINT or SIGTERM,\n"
     "                   or when the segment is destroyed\n"
     "  --name PREFIX    only events whose name is PREFIX or continues it at a dot\n"
     "  --count N        stop after N events\n"
     "  --timeout S      stop following after S seconds\n"},
    {"samplers", "", cmd_samplers, "samplers",
     "Every event name's sampler (set with foundation-ctl sampler set, or\n"
     "\"always\" for names seen without one): events that reached it, events it\n"
     "kept, and its current probability.\n"},
    {"changes", "p", cmd_changes, "changes [--prefix P]",
     "The registry's change log, oldest first: revision, time (UTC), kind\n"
     "(registered, updated, unregistered, removed), owner pid, the death's\n"
     "graveyard number for a removal after a death, key.  The log keeps the last\n"
     "N changes (foundation-ctl create --changes N); first the newest revision,\n"
     "the subscriptions open and the overruns they met.  Stops at a change still\n"
     "being made.  foundation-ctl watch follows it.\n"
     "  --prefix P  only keys that start with P\n"},
    {"check", "", cmd_check, "check",
     "Verify every invariant of the segment; print each violation as\n"
     "\"[code] message\", then the count.  Exit 1 if there is any.  Exact only while\n"
     "no writer is in the middle of an operation.  A process that just died and\n"
     "that the running reaper takes up within a second is a \"note: ...\" line\n"
     "(JSON: \"notes\"), not a violation.\n"},
    {"flags", "", cmd_flags, "flags",
     "The current stage and every feature flag: value (on, off or a percentage),\n"
     "default, built-in or user-defined, and when it last changed.\n"},
    {"stages", "", cmd_stages, "stages",
     "The current stage, each stage's profile, and the history of flag and stage\n"
     "changes (the last 64, oldest first): time, pid, flag, from, to, reason.\n"},
    {"metrics", "LW", cmd_metrics, "metrics [--listen ADDRESS:PORT | --textfile PATH]",
     "The segment's counts, capacities and usage, the deaths reaped, the reaper's\n"
     "latency (a histogram) and drop counters, in the Prometheus text exposition\n"
     "format, each sample labelled with the segment.  Every counter and the\n"
     "histogram count since the segment's creation (they never go down).\n"
     "--json is refused (exit 2).\n"
     "  --listen ADDRESS:PORT  serve them over HTTP at /metrics (GET or HEAD; other\n"
     "                         paths 404), ADDRESS an IPv4 address or [IPv6], PORT\n"
     "                         0 for any free one; prints \"listening on URL\" and\n"
     "                         serves one connection at a time (8 KiB request, 2 s\n"
     "                         timeouts) until SIGINT or SIGTERM (exit 0), or the\n"
     "                         segment is destroyed (503, then exit 1)\n"
     "  --textfile PATH        write them to PATH atomically (PATH.tmp.PID, then\n"
     "                         rename), for node_exporter's textfile collector\n"},
    {"cluster", "", cmd_cluster, "cluster",
     "The cluster mirror of foundation-mirrord (docs/cluster.md): the cluster and\n"
     "this host, degraded or not, the publisher (its lease, TTL, entries published),\n"
     "the mirror (revision applied, lag in revisions, remote entries, dropped), and\n"
     "each other host: its entries here and its lease's TTL left.  Without an agent:\n"
     "one line saying so (JSON: {\"agent\": false}), exit 0.\n"},
    {"dump", "", cmd_dump, "dump",
     "Everything as one JSON document: {\"segment\": NAME, and for every other\n"
     "command but metrics, \"COMMAND\": its --json object} (null where a command\n"
     "failed).  Exit 1 if a command failed or the check found violations.\n"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))
const size_t ncommands = NCOMMANDS;

static void usage(FILE *f, const void *unused)
{
	fprintf(f, "usage: %s [--segment NAME] [--json] COMMAND [ARGS...]\n\ncommands:\n", prog);
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %s\n", commands[i].synopsis);
	fprintf(f,
		"\n"
		"Show a Foundation segment without changing it (it is mapped read-only).\n"
		"\"%s COMMAND --help\" describes one command.\n"
		"\n"
		"  --segment NAME  segment (default $FOUNDATION_SEGMENT, else \"foundation\")\n"
		"  --json          JSON instead of text: one object; strings escaped as JSON,\n"
		"                  bytes that are not valid UTF-8 as \\u00XX (their Latin-1\n"
		"                  reading); times as nanoseconds since the epoch (*_ns)\n"
		"  --help          this text\n"
		"  --version       print the version and exit\n"
		"--segment and --json are also accepted after the command.\n"
		"\n"
		"Exit status: 0 done; 1 error, or check found violations; 2 bad usage.\n",
		prog);
}

static void command_usage(FILE *f, const void *ctx)
{
	const struct command *c = ctx;
	fprintf(f, "usage: %s [--segment NAME] [--json] %s\n\n%s", prog, c->synopsis, c->help);
}

static const struct option all_opts[] = {
    {"attr", required_argument, 0, 'a'},    {"prefix", required_argument, 0, 'p'},
    {"pid", required_argument, 0, 'P'},     {"follow", no_argument, 0, 'f'},
    {"name", required_argument, 0, 'n'},    {"count", required_argument, 0, 'c'},
    {"timeout", required_argument, 0, 't'}, {"json", no_argument, 0, 'j'},
    {"listen", required_argument, 0, 'L'},  {"textfile", required_argument, 0, 'W'},
    {"segment", required_argument, 0, 'S'}, {"help", no_argument, 0, 'h'},
};

#define NOPTS (sizeof(all_opts) / sizeof(all_opts[0]))

/* One of a command's options (a cli_take_fn; ctx: the command). */
static int take_command_option(void *arg, const void *ctx, int o, char *val)
{
	const struct command *c = ctx;
	struct args *a = arg;
	switch (o) {
	case 'a':
		a->attr = val;
		break;
	case 'p':
		a->prefix = val;
		break;
	case 'f':
		a->follow = true;
		break;
	case 'n':
		a->name = val;
		break;
	case 'c':
	case 't':
		if (!parse_num(val, 10, UINT32_MAX, o == 'c' ? &a->count : &a->timeout_s))
			return usage_error(c->name, "%s --%s \"%s\": bad number", c->name,
					   o == 'c' ? "count" : "timeout", val);
		break;
	case 'P': {
		uint64_t v;
		if (!parse_num(val, 10, INT32_MAX, &v) || v == 0)
			return usage_error(c->name, "%s --pid \"%s\": not a process id", c->name,
					   val);
		a->pid = (int32_t)v;
		break;
	}
	case 'j':
		a->json = true;
		break;
	case 'L':
		a->listen = val;
		break;
	case 'W':
		a->textfile = val;
		break;
	case 'S':
		a->segment = val;
		break;
	}
	return CLI_GO_ON;
}

/* Parse a command's arguments (argv[0] is its name).  Returns CLI_GO_ON,
 * else the exit status. */
static int parse_command(const struct command *c, int argc, char **argv, struct args *a)
{
	int status = cli_command_options(argc, argv, c->name, all_opts, NOPTS, "jSh", c->allowed,
					 command_usage, take_command_option, a, c);
	if (status != CLI_GO_ON)
		return status;
	if (optind < argc)
		return usage_error(c->name, "%s \"%s\": unexpected argument", c->name,
				   argv[optind]);
	return CLI_GO_ON;
}

int main(int argc, char **argv)
{
	struct args a = {.out = stdout};
	struct cli_global g = {&a.segment, &a.json};
	const void *cmd;
	int status = cli_program_start(argc, argv, "+:s:jh", usage, &g, commands, NCOMMANDS,
				       sizeof(commands[0]), &cmd);
	if (status != CLI_GO_ON)
		return status;
	const struct command *c = cmd;
	status = parse_command(c, argc - optind, argv + optind, &a);
	if (status != CLI_GO_ON)
		return status;
	if (a.listen && a.textfile)
		return usage_error(c->name, "metrics: --listen or --textfile, not both");
	if (a.json && c->run == cmd_metrics)
		return usage_error(c->name, "metrics --json: metrics prints the Prometheus text "
					    "format only");
	if ((status = cli_segment_name(&a.segment, c->name)) != CLI_GO_ON)
		return status;
	fdn_segment *s;
	int r = fdn_segment_attach(a.segment, FDN_SEG_READONLY, &s);
	char why[256];
	if (r)
		return complain(EXIT_FAIL, attach_why(a.segment, r, why, sizeof(why)),
				"segment \"%s\"", a.segment);
	/* A segment truncated under us ends the walk with one line, exit 1
	 * (never a crash): the SIGBUS guard, and a look before each walk. */
	fdn_segment_guard_sigbus(s, prog);
	status = c->run(s, &a);
	fdn_segment_detach(s);
	if (fflush(a.out) != 0 && status == EXIT_OK)
		return complain(EXIT_FAIL, strerror(errno), "output");
	return status;
}
