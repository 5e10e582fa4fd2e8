"""The pure cores stay pure: no clocks, randomness, asyncio, I/O or print in the core packages.

The checker parses every module with `ast` and reports forbidden imports and calls; the
first tests prove the checker catches each kind of violation, the last runs it on the tree.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE_PACKAGES = ("consensus", "chaincode")

FORBIDDEN_MODULES = {
    "asyncio",
    "aiohttp",
    "plyvel",
    "socket",
    "ssl",
    "select",
    "selectors",
    "subprocess",
    "threading",
    "multiprocessing",
    "time",
    "secrets",
    "uuid",
    "logging",
}
# `random` is allowed only for `random.Random` injected with a seed.
RANDOM_ALLOWED = {"Random"}
FORBIDDEN_CALLS = {"print", "open", "input", "breakpoint", "exec", "eval"}
CLOCK_ATTRS = {"now", "utcnow", "today", "fromtimestamp", "urandom", "getrandom", "environ"}


def violations(source: str, filename: str = "<src>") -> list[str]:
    """Every forbidden import, call or clock/randomness access in *source*."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                    found.append(f"{where} imports {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            module = (node.module or "").split(".")[0]
            if module in FORBIDDEN_MODULES:
                found.append(f"{where} imports from {node.module}")
            if module == "random" and any(a.name not in RANDOM_ALLOWED for a in node.names):
                found.append(f"{where} imports module-level randomness from random")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in FORBIDDEN_CALLS:
                found.append(f"{where} calls {node.func.id}()")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "random" and node.attr not in RANDOM_ALLOWED:
                found.append(f"{where} uses random.{node.attr}")
            if node.attr in CLOCK_ATTRS:
                found.append(f"{where} uses {node.value.id}.{node.attr}")
    return found


@pytest.mark.parametrize(
    "snippet",
    [
        "import asyncio",
        "import time\n",
        "from time import monotonic",
        "import random\nx = random.random()",
        "from random import choice",
        "from datetime import datetime\nd = datetime.now()",
        "print('x')",
        "import os\nb = os.urandom(8)",
        "open('f')",
        "import plyvel",
        "from aiohttp import web",
    ],
)
def test_checker_catches(snippet: str) -> None:
    assert violations(snippet), snippet


def test_checker_allows_injected_random_and_plain_code() -> None:
    ok = "import random\n\ndef f(rng: random.Random) -> int:\n    return rng.randrange(3)\n"
    assert violations(ok) == []


def test_pure_cores_are_pure() -> None:
    found = []
    files = [p for pkg in PURE_PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert files, "the pure packages exist"
    for path in files:
        found += violations(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert found == []
