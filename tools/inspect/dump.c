/* tools/inspect/dump.c - foundation-inspect: every command's JSON in one document. */
#include "inspect/inspect.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- dump: every command's JSON in one document -------------------------------------- */

int cmd_dump(fdn_segment *s, const struct args *a)
{
	struct args j = *a;
	j.json = true;
	j.attr = j.prefix = NULL;
	j.pid = 0;
	int status = EXIT_OK;
	fprintf(a->out, "{\"segment\":");
	json_cstr(a->out, a->segment);
	for (size_t i = 0; i < ncommands; i++) {
		const struct command *c = &commands[i];
		if (c->run == cmd_dump || c->run == cmd_metrics)
			continue;
		/* Each command writes its object into memory first: one that
		 * fails half-way (it says why on stderr) becomes null, and the
		 * document stays whole. */
		char *buf = NULL;
		size_t len = 0;
		FILE *mem = open_memstream(&buf, &len);
		if (!mem)
			return complain(EXIT_FAIL, fdn_strerror(-ENOMEM), "dump");
		unsigned before = cli_complaints;
		j.out = mem;
		int st = c->run(s, &j);
		fclose(mem);
		fprintf(a->out, ",\"%s\":", c->name);
		if (cli_complaints != before || !buf) {
			fprintf(a->out, "null");
			status = EXIT_FAIL;
		} else {
			fwrite(buf, 1, len, a->out);
			if (st != EXIT_OK) /* check found violations */
				status = st;
		}
		free(buf);
	}
	fprintf(a->out, "}\n");
	return status;
}
