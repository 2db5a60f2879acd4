/*
 * error.c - messages and names for every code of foundation/error.h, for
 * shm/ (check.c's report of a bad header) and lib/ alike; the public
 * fdn_strerror and fdn_errname (lib/error.c) return these.  Calls nothing
 * of the library.
 */
#include "shm.h"

#include <string.h>

#define FDN__ERR_MSG(name, msg) [FDN__EIDX_##name] = msg,
static const char *const fdn__err_msg[FDN__EIDX_COUNT] = {FDN_ERRNO_MAP(FDN__ERR_MSG)};
#undef FDN__ERR_MSG

#define FDN__ERR_NAME(name, msg) [FDN__EIDX_##name] = "FDN_E" #name,
static const char *const fdn__err_name[FDN__EIDX_COUNT] = {FDN_ERRNO_MAP(FDN__ERR_NAME)};
#undef FDN__ERR_NAME

static int fdn__is_own(int code)
{
	return code <= FDN_ERR_FIRST && code >= FDN_ERR_LAST;
}

const char *fdn__strerror(int code)
{
	if (code == 0)
		return "success";
	if (fdn__is_own(code))
		return fdn__err_msg[FDN_ERR_FIRST - code];
	if (code < 0 && code > -4096) {
		const char *d = strerrordesc_np(-code);
		return d ? d : "unknown error";
	}
	return "unknown error";
}

const char *fdn__errname(int code)
{
	if (code == 0)
		return "OK";
	if (fdn__is_own(code))
		return fdn__err_name[FDN_ERR_FIRST - code];
	if (code < 0 && code > -4096) {
		const char *n = strerrorname_np(-code);
		return n ? n : "UNKNOWN";
	}
	return "UNKNOWN";
}
