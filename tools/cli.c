/* tools/cli.c - see cli.h. */
#include "cli.h"

#include <foundation/common.h>

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

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

int print_version(void)
{
	printf("%s %s\n", prog, fdn_version());
	return EXIT_OK;
}
