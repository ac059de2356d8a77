#!/bin/sh
# dev.sh - the README's first command: install what is needed, build, and start
# a working development server for DOMAIN (default example.test) on the
# embedded SQLite store, on the development ports (SMTP on 127.0.0.1:2525).
# The first run creates ./dev-data (config, store, postmaster password printed
# once); later runs start the same instance again.
set -eu
cd "$(dirname "$0")/.."
domain=${1:-example.test}
dir=${DAKIYA_DIR:-./dev-data}
./scripts/bootstrap.sh
[ -d build-release ] || meson setup build-release --buildtype=release -Dtests=false >/dev/null
ninja -C build-release >/dev/null
if [ ! -f "$dir/dakiya.conf" ]; then
  ./build-release/dakiya quickstart --domain "$domain" --dir "$dir" --dev
fi
echo "starting: build-release/dakiya serve -c $dir/dakiya.conf (Ctrl-C stops it)"
exec ./build-release/dakiya serve -c "$dir/dakiya.conf"
