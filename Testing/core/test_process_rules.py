"""Every process this project starts gets an argument list, never a shell command line.

A shell would interpret a user's file name (spaces, quotes, ``;``) as syntax; an argument list passes it through as one
argument. The rule is checked on the syntax tree of every Python file we ship or run, so a new call cannot slip in.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
SOURCES = [path for folder in ("MobileUViTSegment", "benchmarks", "tools", "Testing")
           for path in sorted((REPOSITORY / folder).rglob("*.py"))]
PROCESS_FUNCTIONS = {"run", "Popen", "call", "check_call", "check_output"}
SHELL_FUNCTIONS = {("os", "system"), ("os", "popen"), ("subprocess", "getoutput"), ("subprocess", "getstatusoutput")}


def violations(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
        where = f"{path.relative_to(REPOSITORY) if path.is_relative_to(REPOSITORY) else path.name}:{node.lineno}"
        if (owner, node.func.attr) in SHELL_FUNCTIONS:
            found.append(f"{where} calls {owner}.{node.func.attr}, which runs a shell")
        if owner == "subprocess" and node.func.attr in PROCESS_FUNCTIONS:
            if any(keyword.arg == "shell" and not (isinstance(keyword.value, ast.Constant)
                                                   and keyword.value.value is False) for keyword in node.keywords):
                found.append(f"{where} passes shell= to subprocess.{node.func.attr}")
            if node.args and isinstance(node.args[0], (ast.Constant, ast.JoinedStr, ast.BinOp)):
                found.append(f"{where} gives subprocess.{node.func.attr} a string, not an argument list")
    return found


def test_the_rule_catches_a_shell_call(tmp_path: Path):
    bad = tmp_path / "shell_example.py"
    bad.write_text('import os, subprocess\nos.system("ls")\nsubprocess.run(f"ls {x}", shell=True)\n',
                   encoding="utf-8")
    assert len(violations(bad)) == 3


def test_no_process_is_started_through_a_shell():
    assert len(SOURCES) > 50
    problems = [problem for path in SOURCES for problem in violations(path)]
    assert problems == []
