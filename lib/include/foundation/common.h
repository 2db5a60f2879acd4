/*
 * foundation/common.h - export macro and version of libfoundation.
 *
 * Every public symbol is declared with FDN_API; the shared library is built
 * with -fvisibility=hidden so that nothing else is exported.
 *
 * The version: these macros are the only place it is written (CMake reads
 * them for the package version and the shared library's soname,
 * libfoundation.so.MAJOR).  A program compiled against one version and run
 * with another library compares FDN_VERSION_STRING with fdn_version().
 */
#ifndef FOUNDATION_COMMON_H
#define FOUNDATION_COMMON_H

#if defined(FDN_BUILDING_LIBRARY) && defined(__GNUC__)
#define FDN_API __attribute__((visibility("default")))
#else
#define FDN_API
#endif

#define FDN_VERSION_MAJOR 1
#define FDN_VERSION_MINOR 0
#define FDN_VERSION_PATCH 0

#define FDN_VERSION_STR_(x) #x
#define FDN_VERSION_STR(x)  FDN_VERSION_STR_(x)
/* "MAJOR.MINOR.PATCH" of the headers. */
#define FDN_VERSION_STRING                 \
	FDN_VERSION_STR(FDN_VERSION_MAJOR) \
	"." FDN_VERSION_STR(FDN_VERSION_MINOR) "." FDN_VERSION_STR(FDN_VERSION_PATCH)
/* MAJOR * 10000 + MINOR * 100 + PATCH, for #if comparisons. */
#define FDN_VERSION_NUMBER (FDN_VERSION_MAJOR * 10000 + FDN_VERSION_MINOR * 100 + FDN_VERSION_PATCH)

#ifdef __cplusplus
extern "C" {
#endif

/* "MAJOR.MINOR.PATCH" of the library this program runs with (the
 * FDN_VERSION_STRING it was built with); a static string. */
FDN_API const char *fdn_version(void);

#ifdef __cplusplus
}
#endif

#endif
