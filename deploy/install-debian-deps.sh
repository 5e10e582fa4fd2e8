#!/usr/bin/env bash
# Installs the Debian packages medledger needs, only when one is missing.
# openssl: the test suite checks generated certificates with `openssl verify`.
# python3-venv: `python3 -m venv` on a bare Debian Python ($PYTHON: the interpreter the
# Makefile builds the .venv with, deploy/pick-python.sh's choice by default).
set -euo pipefail
python="${PYTHON:-$(bash "$(dirname "$0")/pick-python.sh")}"
missing=()
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
"$python" -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
fi
