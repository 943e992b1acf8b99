"""The API page's cross-references: Sphinx roles in povsim's docstrings as mkdocstrings links.

povsim's docstrings name other objects the Sphinx way (``:func:`povsim.run```,
``:class:`~povsim.results.Result```, ``:meth:`step```).  mkdocstrings does not read
these roles, so this griffe extension rewrites them, before the docstrings are rendered, into
autorefs cross-references: a link to the object where the API page documents it, and plain
code where it does not (an *optional* reference, so ``mkdocs build --strict`` never fails on a
name the page leaves out).  A short name (``:meth:`step```) is resolved in the scope of the
object whose docstring holds it; ``~`` shows only the last part of the name, as in Sphinx.

mkdocs.yml loads it with ``extensions: [tools/mkdocs_roles.py:SphinxRoles]``;
``tests/test_api_docs.py`` tests :func:`convert`.
"""

from __future__ import annotations

import html
import re
from typing import Any, Callable, Iterator

try:
    from griffe import Extension
except ImportError:  # pragma: no cover - the docs extra is not installed: convert() still works
    Extension = object

__all__ = ["ROLE_RE", "convert", "SphinxRoles"]

#: a Sphinx cross-reference role: ``:func:`name```, ``:py:class:`~a.b.C```, ``:meth:`title <a.b.c>```
ROLE_RE = re.compile(
    r":(?:py:)?(?P<role>func|meth|class|mod|attr|data|obj|exc|const|ref):"
    r"`(?P<body>[^`<>]+?|[^`<>]*<[^`<>]+>)`"
)
_EXPLICIT = re.compile(r"^(?P<title>.*?)\s*<(?P<target>[^<>]+)>$")


def convert(text: str, resolve: Callable[[str], str | None] = lambda name: None) -> str:
    """``text`` with every Sphinx role replaced by an optional autorefs cross-reference.

    ``resolve(name)`` gives the full dotted path of a name as written (``"step"`` ->
    ``"povsim.engine.Simulation.step"``), or None to use the name itself.  The reference shows
    the name as written (its last part after ``~``; the title of ``title <target>``) as code.
    """

    def replace(match: re.Match) -> str:
        body = match["body"].strip()
        explicit = _EXPLICIT.match(body)
        if explicit:
            title, target = explicit["title"], explicit["target"].strip().lstrip("~")
        else:
            target = body.lstrip("~.")
            title = target.rsplit(".", 1)[-1] if body.startswith("~") else target
        identifier = resolve(target) or target
        return (f'<autoref identifier="{html.escape(identifier, quote=True)}" optional>'
                f"<code>{html.escape(title)}</code></autoref>")

    return ROLE_RE.sub(replace, text)


def _objects(obj: Any) -> Iterator[Any]:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)


def _resolver(obj: Any) -> Callable[[str], str | None]:
    """Names as the object's own code would see them: its members, its module's names and imports."""

    def resolve(name: str) -> str | None:
        head, _, rest = name.partition(".")
        for scope in (obj, getattr(obj, "parent", None), getattr(obj, "module", None)):
            if scope is None:
                continue
            try:
                base = scope.resolve(head)
            except Exception:  # noqa: BLE001 - not a name in this scope
                continue
            return f"{base}.{rest}" if rest else base
        return None

    return resolve


class SphinxRoles(Extension):
    """Rewrite the Sphinx roles of every docstring of a loaded package (see the module's docstring)."""

    def on_package(self, *, pkg: Any, **kwargs: Any) -> None:
        for obj in _objects(pkg):
            if obj.docstring is not None and ":" in obj.docstring.value:
                obj.docstring.value = convert(obj.docstring.value, _resolver(obj))
