"""The files a template reads besides its own (`html_file`, and what it extends, includes
or imports): only files inside the templates folder, and `validate` says which are
missing.

Jinja2's FileSystemLoader refuses `..` and absolute names, but follows symbolic links:
with `templates/root -> /`, `{% include "root/etc/hostname" %}` read the host's file.
`FolderLoader` resolves a name's real path (every link followed) and refuses it unless
it is inside the folder's own real path. `missing_references` finds the `extends`,
`include` and `import` of a template whose constant name no file answers, with lines.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import jinja2
from jinja2 import nodes
from jinja2.loaders import split_template_path

from journeys.errors import Problem

IMPORTS = (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)


def inside(folder: Path, name: str) -> bool:
    """Whether `folder / name`, every symbolic link followed, is inside `folder`."""
    real = Path(os.path.realpath(folder / name))
    return real.is_relative_to(os.path.realpath(folder))


class FolderLoader(jinja2.FileSystemLoader):
    """A FileSystemLoader for one folder that reads no file outside it."""

    def __init__(self, folder: Path) -> None:
        super().__init__(str(folder))
        self.folder = folder

    def get_source(self, environment: jinja2.Environment,
                   template: str) -> tuple[str, str, Callable[[], bool]]:
        if not inside(self.folder, os.path.join(*split_template_path(template))):
            raise jinja2.TemplateNotFound(template, f"{template!r} is outside the templates "
                                          "folder (a symbolic link leads out of it)")
        return super().get_source(environment, template)


def constant_names(node: nodes.Expr) -> list[str] | None:
    """The file names an `extends`/`include`/`import` names, if all are constant."""
    if isinstance(node, nodes.Const) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, nodes.Tuple | nodes.List) and all(
            isinstance(item, nodes.Const) and isinstance(item.value, str)
            for item in node.items):
        return [item.value for item in node.items]  # type: ignore[attr-defined]
    return None  # computed at render: not judged here


def missing_references(env: jinja2.Environment, source: str,
                       ) -> tuple[list[tuple[int, str]], list[str]]:
    """(line in `source`, message) for each `extends`, `include` or `import` whose
    constant name no file in the templates folder answers (an `include ... ignore
    missing` aside; of a list of names, one is enough), and the names that were found.
    Raises TemplateSyntaxError."""
    missing: list[tuple[int, str]] = []
    found: list[str] = []
    for node in env.parse(source).find_all(IMPORTS):
        assert isinstance(node, IMPORTS)
        names = constant_names(node.template)
        if names is None or (isinstance(node, nodes.Include) and node.ignore_missing):
            continue
        reasons = []
        for name in names:
            try:
                if env.loader is None:
                    raise jinja2.TemplateNotFound(name, "no templates folder")
                env.loader.get_source(env, name)
                found.append(name)
                break
            except jinja2.TemplateNotFound as exc:
                reasons.append(exc.message or "")
        else:
            keyword = _KEYWORDS[type(node)]
            outside = [r for r in reasons if "outside the templates folder" in r]
            missing.append((node.lineno, f"{keyword} " + " or ".join(map(repr, names)) + ": "
                            + (outside[0] if len(names) == 1 and outside else
                               "no such file in the templates folder")))
    return missing, found


def nested_problems(env: jinja2.Environment, folder: Path, names: list[str],
                    seen: set[str]) -> list[Problem]:
    """`missing_references` in the files `names` (a layout, an include) and in theirs,
    each problem at its own file (`folder / name`) and line; each file read once."""
    problems: list[Problem] = []
    for name in names:
        if name in seen or env.loader is None:
            continue
        seen.add(name)
        try:
            text = env.loader.get_source(env, name)[0]
            missing, found = missing_references(env, text)
        except (jinja2.TemplateError, OSError, UnicodeError):
            continue  # not this check's to report
        problems.extend(Problem(str(folder / name), line, 1, message)
                        for line, message in missing)
        problems.extend(nested_problems(env, folder, found, seen))
    return problems


def reference_problems(env: jinja2.Environment, folder: Path | None, text: str, *,
                       file: str, at: tuple[int, int], seen: set[str]) -> list[Problem]:
    """The missing `extends`/`include`/`import` targets of `text`, whose first line is
    at `at` in `file` (a block scalar's text starts on the line after), and of the
    files it names."""
    try:
        missing, found = missing_references(env, text)
    except jinja2.TemplateSyntaxError:
        return []  # reported as such
    line, col = at
    problems = [Problem(file, line + n - 1, col if n == 1 else 1, message)
                for n, message in missing]
    if folder is not None:
        problems.extend(nested_problems(env, folder, found, seen))
    return problems


_KEYWORDS: dict[type, str] = {nodes.Extends: "extends", nodes.Include: "include",
                              nodes.Import: "import", nodes.FromImport: "from ... import"}


__all__ = ["FolderLoader", "constant_names", "inside", "missing_references", "nested_problems",
           "reference_problems"]
