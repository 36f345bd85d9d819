"""README's "Two commands" are what a newcomer copies and what CI runs: code blocks in order
(set-up, install and start, install and test), the same words in `.ci/run`, every command real."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    following = README.find("\n## ", start + 1)
    return README[start:following if following != -1 else None]


def _code_blocks(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL)]


def test_two_commands_are_a_set_up_block_then_serve_then_test():
    setup, serve, test = _code_blocks(_section("Two commands"))
    assert "venv" in setup and "activate" in setup
    assert "pip install" in serve and serve.endswith("denosumab-cds serve")
    assert "pip install" in test and "'.[test]'" in test and test.endswith("python3 -m pytest")
    assert "-c constraints.txt" in serve and "-c constraints.txt" in test


def test_ci_runs_the_readmes_set_up_and_test_blocks_word_for_word():
    setup, _serve, test = _code_blocks(_section("Two commands"))
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert setup in ci_lines and test in ci_lines
    assert ci_lines.index(setup) < ci_lines.index(test)
    assert ci_lines[-1] == test  # CI's verdict is the test command's


def test_constraints_pin_every_package_the_project_names():
    pins = {
        line.split("==")[0].lower().replace("_", "-")
        for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
        if "==" in line and not line.startswith("#")
    }
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    named = {m.lower().replace("_", "-") for m in re.findall(r'^\s*"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?[<>=!~ ,]', pyproject, flags=re.MULTILINE)}
    named.discard("hatchling")  # the build back-end, installed by pip in its own build environment
    assert named and named <= pins, f"not pinned in constraints.txt: {sorted(named - pins)}"
