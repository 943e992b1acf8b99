"""The documentation cannot drift from the code: generated pages are current, examples run."""

from __future__ import annotations

import re

from helpers import REPO

from povsim.cli import parameters_markdown


def test_parameters_page_is_generated_from_the_schema():
    page = (REPO / "docs" / "parameters.md").read_text()
    assert page == parameters_markdown(), "docs/parameters.md is stale: run `povsim params --markdown > docs/parameters.md`"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "the README has a Python example"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "experiments").symlink_to(REPO / "experiments")
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "errors.png").stat().st_size > 0


def test_readme_quick_start_has_exactly_the_two_commands():
    readme = (REPO / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)```", quick, flags=re.S)
    assert [c.strip() for c in commands] == [
        "pip install -e . && povsim run experiments/quickstart.toml",
        'pip install -e ".[test]" && pytest',
    ]
