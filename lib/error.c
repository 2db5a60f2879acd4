/* error.c - the public names of shm/error.c's messages and names for every
 * code of foundation/error.h. */
#include "shm/shm.h"

#include <foundation/error.h>

const char *fdn_strerror(int code)
{
	return fdn__strerror(code);
}

const char *fdn_errname(int code)
{
	return fdn__errname(code);
}
