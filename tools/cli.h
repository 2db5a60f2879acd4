/*
 * tools/cli.h - the command-line pieces foundation-ctl, foundation-inspect
 * and foundation-demo share: one-line usage errors, the option getopt
 * rejected, the options a command accepts, the one number parser, and
 * --version.  Exit status: 0 done, 1 failed, 2 bad usage.
 */
#ifndef FDN_TOOLS_CLI_H
#define FDN_TOOLS_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* An unsigned decimal (or octal, base 8) number up to max, the whole text
 * (no sign, no space, no suffix). */
bool parse_num(const char *text, int base, uint64_t max, uint64_t *out);

/* --version: "PROG VERSION" on stdout; returns EXIT_OK. */
int print_version(void);

#endif
