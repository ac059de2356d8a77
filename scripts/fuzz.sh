#!/bin/sh
# fuzz.sh - build the libFuzzer targets with clang (ASan + UBSan) in build-fuzz
# and run each for N seconds (first argument, default 60) on a copy of its
# seed corpus in fuzz/corpus/<name>. Exits non-zero if any target fails;
# crash inputs are left as build-fuzz/crash-* etc.
#
# The whole library is compiled with -fsanitize=fuzzer-no-link so that
# libFuzzer sees coverage inside the parsers, not only in the harnesses.
set -eu

SECS=${1:-60}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD="$ROOT/build-fuzz"
TARGETS="smtp_command smtp_data smtp_input mime_addr sasl smtp_reply dsn_params spf auth_results dmarc dkim_tags dkim_canon"

cd "$ROOT"
if [ ! -f "$BUILD/build.ninja" ]; then
	CC=clang meson setup "$BUILD" -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
	    -Dtests=false \
	    "-Dc_args=['-fsanitize=fuzzer-no-link']"
fi
for t in $TARGETS; do
	ninja -C "$BUILD" "fuzz/fuzz_$t"
done

# UBSan findings must stop the run, not just print.
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"

status=0
for t in $TARGETS; do
	work="$BUILD/fuzz-corpus/$t"
	mkdir -p "$work"
	cp "$ROOT/fuzz/corpus/$t"/* "$work/"
	echo "fuzz: running fuzz_$t for ${SECS}s"
	if ! (cd "$BUILD" && "./fuzz/fuzz_$t" -max_total_time="$SECS" -max_len=4096 \
	    -print_final_stats=1 "$work"); then
		echo "fuzz: fuzz_$t FAILED (see the crash-* file in $BUILD)" >&2
		status=1
	fi
done
exit $status
