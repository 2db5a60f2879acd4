/*
 * foundation/common.h - export macro and version of libfoundation.
 *
 * Every public symbol is declared with FDN_API; the shared library is built
 * with -fvisibility=hidden so that nothing else is exported.
 */
#ifndef FOUNDATION_COMMON_H
#define FOUNDATION_COMMON_H

#if defined(FDN_BUILDING_LIBRARY) && defined(__GNUC__)
#define FDN_API __attribute__((visibility("default")))
#else
#define FDN_API
#endif

#define FDN_VERSION_MAJOR 0
#define FDN_VERSION_MINOR 1
#define FDN_VERSION_PATCH 0

#endif
