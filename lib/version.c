/* lib/version.c - the library's version (foundation/common.h). */
#include <foundation/common.h>

const char *fdn_version(void)
{
	return FDN_VERSION_STRING;
}
