#!/usr/bin/env bash
# Installs the Debian packages medledger needs, only when one is missing.
# openssl: the test suite checks generated certificates with `openssl verify`.
# python3-venv: `python3 -m venv` on a bare Debian Python.
set -euo pipefail
missing=()
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
fi
