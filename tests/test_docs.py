"""The documentation cannot drift from the code: generated pages are current, examples run, pages are linked."""

from __future__ import annotations

import importlib.util
import re
import tomllib

import pytest
from helpers import REPO

from povsim.cli import parameters_markdown
from povsim.config import Config, load_config, parameter_table


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


# --------------------------------------------------------------------------------------
# Generated pages (tools/docs_pages.py): the analysts' guide and the model page's tables
# --------------------------------------------------------------------------------------

def _docs_pages():
    spec = importlib.util.spec_from_file_location("docs_pages", REPO / "tools" / "docs_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DOCS_PAGES = _docs_pages()


def test_analyst_guide_is_generated_from_the_schema():
    page = (REPO / "docs" / "guide-analysts.md").read_text()
    assert page == DOCS_PAGES.analyst_guide(), "docs/guide-analysts.md is stale: run `python tools/docs_pages.py`"


def test_analyst_guide_explains_every_key():
    page = (REPO / "docs" / "guide-analysts.md").read_text()
    for row in parameter_table():
        assert f"| `{row['key']}` |" in page, row["key"]
    for path in (REPO / "experiments").glob("*.toml"):
        assert f"`experiments/{path.name}`" in page


def test_analyst_guide_snippets_make_a_complete_experiment_file(tmp_path):
    """The TOML under 'Every key', written out, is a valid file that sets every key to its default."""
    page = (REPO / "docs" / "guide-analysts.md").read_text()
    every_key = page.split("## Every key", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```toml\n(.*?)```", every_key, flags=re.S)
    text = "\n".join(blocks)
    data = tomllib.loads(text)
    assert data["policy"]["channels"]["cadre"]["visits_per_village"] == Config().policy.channels.cadre.visits_per_village
    path = tmp_path / "every_key.toml"
    path.write_text(text)
    assert load_config(path).to_dict() == Config().to_dict()


def test_model_page_tables_are_generated_from_the_code():
    page = (REPO / "docs" / "model.md").read_text()
    assert page == DOCS_PAGES.update_model_page(page), "docs/model.md is stale: run `python tools/docs_pages.py`"
    assert "<!-- generated: household state -->" in page


def test_model_page_covers_every_parameter_once():
    page = (REPO / "docs" / "model.md").read_text()
    covered = DOCS_PAGES.model_page_parameters(page)
    keys = [row["key"] for row in parameter_table()]
    assert sorted(covered) == sorted(keys), (
        f"missing: {sorted(set(keys) - set(covered))}; "
        f"repeated: {sorted(k for k in set(covered) if covered.count(k) > 1)}"
    )


def test_model_page_follows_the_odd_protocol():
    page = (REPO / "docs" / "model.md").read_text()
    headings = re.findall(r"^## (.+)$", page, flags=re.M)
    assert headings[:7] == [
        "1. Purpose and patterns",
        "2. Entities, state variables and scales",
        "3. Process overview and scheduling",
        "4. Design concepts",
        "5. Initialisation",
        "6. Input data",
        "7. Submodels",
    ]
    for concept in ("Basic principles", "Emergence", "Sensing", "Interaction", "Stochasticity", "Collectives"):
        assert f"**{concept}" in page, concept
    assert "### Observation" in page


def test_generated_pages_check_mode_passes():
    assert DOCS_PAGES.main(["--check"]) == 0


def test_a_stale_block_is_rewritten():
    page = "intro\n<!-- generated: parameters policy.cost -->\nold table\n<!-- end generated -->\nend\n"
    new = DOCS_PAGES.update_model_page(page)
    assert "old table" not in new and "| `policy.cost.cadre_visit` |" in new and new.endswith("end\n")
    with pytest.raises(ValueError, match="no parameter"):
        DOCS_PAGES.update_model_page(page.replace("policy.cost", "policy.nothing"))


# --------------------------------------------------------------------------------------
# Every code example runs; every page is linked and in the site's nav
# --------------------------------------------------------------------------------------

PAGES_WITH_PYTHON = sorted(
    p.relative_to(REPO).as_posix()
    for p in (REPO / "docs").rglob("*.md")
    if "```python" in p.read_text() and p.name != "extending.md"  # its blocks are files and edits: test_extending.py
)


def test_the_guides_have_python_examples():
    assert "docs/guide-researchers.md" in PAGES_WITH_PYTHON
    assert "docs/guide-students.md" in PAGES_WITH_PYTHON


@pytest.mark.parametrize("page", PAGES_WITH_PYTHON)
def test_docs_python_examples_run(page, tmp_path, monkeypatch):
    """Each page's ```python blocks, run in order in one namespace, from a folder that looks like the repository."""
    text = (REPO / page).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    monkeypatch.chdir(tmp_path)
    for folder in ("experiments", "docs", "benchmarks"):
        (tmp_path / folder).symlink_to(REPO / folder)
    namespace: dict = {"__name__": "__docs__"}
    for k, code in enumerate(blocks):
        exec(compile(code, f"{page} (python block {k + 1})", "exec"), namespace)
    if page == "docs/guide-researchers.md":
        assert (tmp_path / "headcount_vs_official.png").stat().st_size > 0
        assert (tmp_path / "my_figures" / "headcount_vs_official.png").is_file()


def _doc_pages() -> list[str]:
    return sorted(p.relative_to(REPO / "docs").as_posix() for p in (REPO / "docs").rglob("*.md"))


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
    listed = readme.split("## Documentation", 1)[1]
    for page in _doc_pages():
        assert f"](docs/{page})" in listed, f"README's Documentation list does not link docs/{page}"


def test_the_reliability_page_names_only_tests_that_exist():
    """Every promise on the page names its test: each named test is a test function of that file."""
    page = (REPO / "docs" / "reliability.md").read_text()
    named = re.findall(r"`(tests/[a-z_]+\.py)::([a-z0-9_]+)`", page)
    assert len(named) >= 20
    for path, name in named:
        source = (REPO / path).read_text()
        assert re.search(rf"^def {name}\(", source, flags=re.M), f"{path}::{name} is not a test"


def test_mkdocs_nav_lists_every_page():
    config = (REPO / "mkdocs.yml").read_text()
    nav = config.split("\nnav:\n", 1)[1].split("\n\n", 1)[0]
    nav = re.split(r"\n\S", nav, maxsplit=1)[0]  # up to the next top-level key
    in_nav = sorted(re.findall(r":\s*(\S+\.md)\s*$", nav, flags=re.M))
    assert in_nav == _doc_pages()


def test_docs_extra_and_ci_build_the_site():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    docs = pyproject["project"]["optional-dependencies"]["docs"]
    assert any(d.startswith("mkdocs>=") for d in docs) and any(d.startswith("mkdocstrings[python]>=") for d in docs)
    ci = (REPO / ".ci" / "run").read_text()
    assert '-e ".[test,app,docs]"' in ci
    assert ci.index("\npytest\n") < ci.index("mkdocs build --strict --site-dir")
