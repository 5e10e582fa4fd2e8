"""A static check that a contract's source stays deterministic, run when it is registered.

Every endorser must compute the same response from the same proposal and state, so a
contract module may not reach I/O, clocks, randomness, the process environment or floats.
Python cannot sandbox that at run time, so the registry refuses a module whose source:

- imports anything outside :data:`ALLOWED_MODULES` (pure standard-library helpers and the
  contract API);
- names a builtin that does I/O, reflection or process-dependent values
  (:data:`FORBIDDEN_NAMES`: ``open``, ``print``, ``eval``, ``hash``, ``id``, ``float``...);
- touches a dunder attribute (``x.__class__``, the usual way out of any restriction);
- holds a float or complex literal, or divides with ``/`` (which makes floats);
- catches everything (a bare ``except:`` or ``except BaseException``), which would also
  catch the runtime's step budget.

What it cannot see: iteration over sets of str or bytes, whose order varies between
processes (sort them first), and code reached through allowed modules. The runtime adds a
step budget and output limits (:mod:`chaincode.runtime`); the network configuration pins
each contract's code hash, so every endorser runs the same source.
"""

from __future__ import annotations

import ast

from protocol.errors import ConfigError

ALLOWED_MODULES = frozenset(
    {
        "__future__",
        "base64",
        "binascii",
        "bisect",
        "chaincode",
        "collections",
        "dataclasses",
        "enum",
        "functools",
        "hashlib",
        "heapq",
        "itertools",
        "json",
        "operator",
        "protocol",
        "re",
        "string",
        "struct",
        "typing",
    }
)

FORBIDDEN_NAMES = frozenset(
    {
        "__import__",
        "breakpoint",
        "compile",
        "complex",
        "delattr",
        "eval",
        "exec",
        "float",
        "getattr",
        "globals",
        "hash",
        "id",
        "input",
        "locals",
        "memoryview",
        "open",
        "print",
        "setattr",
        "vars",
    }
)


def determinism_problems(source: str, *, filename: str = "<contract>") -> list[str]:
    """Every rule *source* breaks, as ``line N: what`` (empty when it is acceptable)."""
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as e:
        return [f"line {e.lineno}: does not parse"]
    problems = []
    for node in ast.walk(tree):
        problem = _problem(node)
        if problem is not None:
            problems.append(f"line {getattr(node, 'lineno', '?')}: {problem}")
    return problems


def check_deterministic(source: str, *, what: str) -> None:
    """Raise ConfigError naming the first few problems of *source* (a contract module)."""
    problems = determinism_problems(source, filename=what)
    if problems:
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ConfigError(f"contract {what} is not deterministic: {shown}{more}")


def _problem(node: ast.AST) -> str | None:
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] not in ALLOWED_MODULES:
                return f"imports {alias.name}"
    elif isinstance(node, ast.ImportFrom):
        module = node.module or ""
        if node.level == 0 and module.split(".")[0] not in ALLOWED_MODULES:
            return f"imports from {module}"
        if node.level > 0:
            return "relative imports are not allowed"
    elif isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
        return f"uses {node.id}"
    elif isinstance(node, ast.Attribute) and node.attr.startswith("__"):
        return f"touches {node.attr}"
    elif isinstance(node, ast.Constant) and isinstance(node.value, float | complex):
        return "has a float literal"
    elif isinstance(node, ast.BinOp | ast.AugAssign) and isinstance(node.op, ast.Div):
        return "divides with / (floats); use //"
    elif isinstance(node, ast.ExceptHandler) and (
        node.type is None or (isinstance(node.type, ast.Name) and node.type.id == "BaseException")
    ):
        return "catches everything (bare except or BaseException)"
    return None
