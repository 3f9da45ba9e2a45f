#!/usr/bin/env bash
# What the install compiles with: the frame scanner's native part (proxy/relay/_wsscan.c)
# needs a C compiler; Python's headers come with the interpreter (pyenv, python.org) or
# python3-dev (Debian's). Idempotent: a no-op when a compiler is on PATH. Without one the
# install still succeeds, with the scanner in Python alone, and the scanner tests say so.
set -euo pipefail

if command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1; then
    exit 0
fi
. "$(dirname "$0")/apt.sh"
apt_install install-build-deps "install gcc to build the native frame scanner (the proxy runs without it, slower)" \
    gcc libc6-dev || exit 0
