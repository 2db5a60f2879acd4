/* test_errors.c - every error code has a message and a name; errno too. */
#include "common.h"

Test(errors, own_codes_in_reserved_range_with_messages)
{
	int seen = 0;
#define CHECK(name, msg)                                            \
	do {                                                        \
		int c = FDN_E##name;                                \
		cr_assert(c <= FDN_ERR_FIRST && c >= FDN_ERR_LAST); \
		cr_assert_str_eq(fdn_strerror(c), msg);             \
		cr_assert_str_eq(fdn_errname(c), "FDN_E" #name);    \
		seen++;                                             \
	} while (0);
	FDN_ERRNO_MAP(CHECK)
#undef CHECK
	cr_assert_eq(seen, FDN_ERR_FIRST - FDN_ERR_LAST + 1);
	cr_assert_eq(FDN_EEXISTS, -30400);
	cr_assert_eq(FDN_ENOTFOUND, -30401);
}

Test(errors, errno_codes_and_unknown)
{
	cr_assert_str_eq(fdn_errname(-ENOENT), "ENOENT");
	cr_assert_str_eq(fdn_strerror(-ENOENT), "No such file or directory");
	cr_assert_str_eq(fdn_strerror(0), "success");
	cr_assert_str_eq(fdn_strerror(12345), "unknown error");
	cr_assert_str_eq(fdn_errname(FDN_ERR_LAST - 1), "UNKNOWN");
	cr_assert_str_eq(fdn_strerror(-5000), "unknown error");
}

Test(errors, version_of_headers_and_library)
{
	char want[32];
	snprintf(want, sizeof(want), "%d.%d.%d", FDN_VERSION_MAJOR, FDN_VERSION_MINOR,
		 FDN_VERSION_PATCH);
	cr_assert_str_eq(FDN_VERSION_STRING, want);
	cr_assert_str_eq(fdn_version(), FDN_VERSION_STRING);
	cr_assert_eq(FDN_VERSION_NUMBER,
		     FDN_VERSION_MAJOR * 10000 + FDN_VERSION_MINOR * 100 + FDN_VERSION_PATCH);
}
