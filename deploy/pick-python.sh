#!/usr/bin/env bash
# Prints the Python interpreter `make` builds the .venv with: the distribution's own
# /usr/bin/python3 when it is 3.11 or newer, else the first python3 on PATH.
#
# Debian and Ubuntu build their python3 with profile-guided optimisation and link-time
# optimisation, statically linked; a Python built from source (pyenv's default, for one)
# has neither and calls through a shared libpython. Here the distribution's 3.11 ran our
# pure-Python code about 1.5 times as fast, and the whole local network committed about 11%
# more transactions per second on it (bench/e2e.py), so it is preferred when it is recent
# enough. PYTHON=... on the make command line overrides this choice.
set -euo pipefail
system=/usr/bin/python3
if [ -x "$system" ] && "$system" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "$system"
else
    command -v python3
fi
