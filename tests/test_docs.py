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


def test_mesa_page_python_example_runs(capsys):
    page = (REPO / "docs" / "mesa.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    assert blocks, "docs/mesa.md has a Python example"
    for code in blocks:
        exec(compile(code, "docs/mesa.md", "exec"), {})
    out = capsys.readouterr().out
    assert "poor households missed at the end of 2020-12" in out and "<Household " in out


def test_readme_links_every_docs_page():
    readme = (REPO / "README.md").read_text()
    for page in sorted((REPO / "docs").glob("*.md")):
        assert f"](docs/{page.name})" in readme, f"README's Documentation list does not link docs/{page.name}"
