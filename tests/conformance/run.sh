#!/bin/sh
# make check: the differential conformance suite (tools/conformance) with
# its default split sample, against the build under test; a difference
# fails the test and is printed with its stream.
: "${QB_SRCDIR:?}" "${QB_BUILDDIR:?}"
exec "${PYTHON3:-python3}" "$QB_SRCDIR/tools/conformance" \
    --builddir "$QB_BUILDDIR"
