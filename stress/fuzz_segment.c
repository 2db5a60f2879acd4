/*
 * fuzz_segment - libFuzzer target over what a reader does with a segment
 * file it did not write: the input, run-length decoded (corrupt_walk.h),
 * becomes a private shm object, which is attached read-only and put
 * through the checker and every walk foundation-inspect runs (cw_walk).
 * Any crash, sanitizer report, or hang (libFuzzer's -timeout) is a bug.
 *
 * Seeds: stress/corpus/*.rle, a fresh and a populated segment written by
 * `stress_corrupt --corpus DIR`.  Build: -DFOUNDATION_FUZZ=ON with clang;
 * run: sh cmake/bootstrap.sh fuzz.
 */
#include "corrupt_walk.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char name[64];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* A read-only attach starts nothing, but be sure of it. */
	setenv("FOUNDATION_NO_AUTOREAPER", "1", 1);
	snprintf(name, sizeof(name), "fdn-fuzz-segment-%d", (int)getpid());
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (cw_decode_to_shm(data, size, name) != 0)
		return 0;
	struct cw_result r;
	cw_walk(name, &r);
	char path[96];
	snprintf(path, sizeof(path), "/dev/shm/%s", name);
	unlink(path);
	return 0;
}
