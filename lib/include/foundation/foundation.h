/* foundation/foundation.h - everything public in libfoundation. */
#ifndef FOUNDATION_FOUNDATION_H
#define FOUNDATION_FOUNDATION_H
#include <foundation/common.h>
#include <foundation/error.h>
#include <foundation/flags.h>
#include <foundation/segment.h>
#include <foundation/attrs.h>
#include <foundation/registry.h>
#include <foundation/changes.h>
#include <foundation/reaper.h>
#include <foundation/spans.h>
#include <foundation/context.h>
#include <foundation/telemetry.h>
#include <foundation/introspect.h>
#endif
