"""The house's size rules: small modules named for what they do, short functions.

No library module over 400 lines, no function over 40 (from its ``def`` line to its last
line: decorators, such as click's options, are not counted; the docstring is).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LIBRARY = ("relais", "domain", "producers", "streams", "consumers", "mss_bridge", "schemas")
TOOLING = ("sandboxes", "ops")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 40


def modules() -> list[Path]:
    return sorted(p for pkg in (*LIBRARY, *TOOLING) for p in (REPO / pkg).rglob("*.py"))


def parsed(source: str) -> ast.Module:
    """``ast.parse``, asked twice when CPython 3.11 raises its spurious "AST constructor
    recursion depth mismatch" SystemError (python/cpython#106905, seen once here with the
    broker's threads running): a real syntax problem raises SyntaxError both times."""
    try:
        return ast.parse(source)
    except SystemError:
        return ast.parse(source)


def long_functions(source: str) -> list[tuple[str, int]]:
    """(name, lines) of every function in ``source`` longer than the rule allows."""
    return [
        (node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(parsed(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]


def test_the_rule_sees_a_long_function_and_not_its_decorators() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES - 1))
    decorators = "\n".join("@option" for _ in range(30))
    assert long_functions(f"{decorators}\ndef fits():\n{body}\n") == []
    assert long_functions(f"def too_long():\n{body}\n    return 0\n") == [
        ("too_long", MAX_FUNCTION_LINES + 1)
    ]


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_modules_and_functions_are_small(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    lines = source.count("\n")
    assert lines <= MAX_MODULE_LINES, f"{lines} lines: split it by meaning"
    assert long_functions(source) == [], "functions over 40 lines: split them into named steps"
