#!/usr/bin/env bash
# What the install compiles with: the frame scanner's native part (proxy/relay/_wsscan.c)
# needs a C compiler; Python's headers come with the interpreter (pyenv, python.org) or
# python3-dev (Debian's). Idempotent: a no-op when a compiler is on PATH. Without one the
# install still succeeds, with the scanner in Python alone, and the scanner tests say so.
set -euo pipefail

if command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-build-deps: no C compiler and no apt-get; install gcc to build the" >&2
    echo "native frame scanner (the proxy runs without it, slower)" >&2
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
$sudo apt-get update
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends gcc libc6-dev
