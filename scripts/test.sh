#!/bin/sh
# test.sh - the README's second command: install what is needed, build with
# AddressSanitizer and UndefinedBehaviorSanitizer, run the unit tests (cmocka)
# and the end-to-end tests (pytest against the real `dakiya serve`).
# Extra arguments go to pytest (e.g. -k smuggling).
set -eu
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
if [ ! -d build ]; then
  meson setup build -Db_sanitize=address,undefined -Db_lundef=false
fi
ninja -C build
# the release build the README's first command (scripts/dev.sh) and the
# benches use: -O3 finds warnings (-Werror) that the sanitizer build does not
if [ ! -d build-release ]; then
  meson setup build-release --buildtype=release -Dtests=false >/dev/null
fi
ninja -C build-release >/dev/null
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
meson test -C build --suite unit --print-errorlogs
DAKIYA_BIN="$PWD/build/dakiya" /usr/bin/python3 -m pytest -v -p no:cacheprovider tests/e2e "$@"
