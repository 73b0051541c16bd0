"""Warnings, not errors: a template that reads a trait with no fallback, and a link
whose host comes from data or a URL printed from data in the text part (not tracked;
journeys/template_links.py). `validate` prints these and those of
journeys/declared.py `library_warnings` (guarded reads of what is never there:
journeys/template_fallbacks.py).

Templates render with `StrictUndefined` (journeys/templating.py), so a profile without
the trait a template reads gets no message: the send is skipped as `template_error`.
That is right for a trait every profile has, and a surprise for one many lack (a first
name, a plan). `journeyman validate` warns about each `profile.traits.<name>` read

    {{ profile.traits.first_name }}                     -> warned
    {{ profile.traits.first_name | default('there') }}  -> fine
    {% if profile.traits.plan is defined %}{{ profile.traits.plan }}{% endif %}  -> fine
    {% if profile.traits.vip %}...{% endif %}           -> warned (the test itself fails)

and stays quiet about `email` and `phone` (a send goes to one of them, so the profile
has it when the message renders). The rest of the scope (`event.properties`,
`enrollment.data`) depends on the journey that sends the template, so it is not judged
here.
"""

from __future__ import annotations

from pathlib import Path

import jinja2
from jinja2 import nodes

from journeys.errors import InvalidJourney, Problem
from journeys.template_fallbacks import PRESENCE_TESTS, defined_by
from journeys.template_files import inside
from journeys.template_links import data_links, data_url_message, data_urls, link_message
from journeys.template_shapes import DICT_METHODS
from journeys.templating import CHANNEL_KINDS, TemplateLibrary
from journeys.textfile import read_text

FALLBACK_FILTERS = frozenset({"default", "d"})  # Jinja2's own, and its short name
ALWAYS_THERE = frozenset({"email", "phone"})  # where the message goes: present
LINKED = ("html", "text")  # an email's parts whose links are tracked


def unguarded_traits(text: str, env: jinja2.Environment) -> list[tuple[str, int]]:
    """The traits `text` reads with no `default` and outside an `is defined` test, each
    with the line of `text` it is first read on, in order (raises TemplateSyntaxError)."""
    found: list[tuple[str, int]] = []
    _walk(env.parse(text), frozenset(), found)
    first: dict[str, int] = {}
    for name, line in found:
        first.setdefault(name, line)
    return list(first.items())


def template_warnings(templates: TemplateLibrary) -> list[Problem]:
    """A warning for each trait read without a fallback, at the line that reads it, and
    for each link of an email whose host comes from data (not tracked)."""
    warnings: list[Problem] = []
    env = jinja2.Environment()  # parsing only: the names, not the sandbox
    for template_id in sorted(templates.templates):
        file = templates.files.get(template_id, f"templates/{template_id}.yaml")
        source = templates.yaml_source(template_id)
        raw = _lines(templates, template_id)
        tpl = templates.templates[template_id]  # links: only where they would be tracked
        email = CHANNEL_KINDS.get(tpl.channel) == "email" and tpl.track
        for where, text in templates.parts(template_id):
            line, col = source.position(where) if source is not None else (1, 1)
            # a block scalar (`|`, `|-`, `>`) starts on the line after its indicator
            block = 1 if raw[line - 1:line] and raw[line - 1][col - 1:col] in ("|", ">") \
                else 0
            for name, at in _read(text, env):
                row = line + block + at - 1
                warnings.append(Problem(file, row, _column(raw, row, name, col, at),
                                        _message(name)))
            for at, column, link in data_links(text) if email and where[0] in LINKED else ():
                row = line + block + at - 1
                found = raw[row - 1].find(link) if 0 < row <= len(raw) else -1
                warnings.append(Problem(file, row, found + 1 if found >= 0 else column,
                                        link_message(link)))
            # a URL printed bare in the text part (the HTML's, when it has none)
            for at, read in (data_urls(text, env) if email and where[0] == (
                    "text" if tpl.text is not None else "html") else ()):
                row = line + block + at - 1
                warnings.append(Problem(file, row, _found(raw, row, read, col if at == 1
                                                          else 1), data_url_message(read)))
        html_file = tpl.html_file
        if html_file is not None and templates.folder is not None:
            if not inside(templates.folder, html_file) or not (
                    path := templates.folder / html_file).is_file():
                continue  # outside the folder, or no file (a FIFO, /dev/zero): check()'s
            try:
                text = read_text(path)
            except InvalidJourney:
                continue  # an error of its own (TemplateLibrary.check)
            shown = str(Path(file).parent / html_file)
            lines = text.splitlines()
            warnings.extend(Problem(shown, at, _column(lines, at, name, 1, at), _message(name))
                            for name, at in _read(text, env))
            warnings.extend(Problem(shown, at, column, link_message(link))
                            for at, column, link in (data_links(text) if email else ()))
            warnings.extend(Problem(shown, at, _found(lines, at, read, 1),
                                    data_url_message(read))
                            for at, read in (data_urls(text, env) if email and tpl.text is None
                                             else ()))
    return warnings


def _lines(templates: TemplateLibrary, template_id: str) -> list[str]:
    """The template file's lines as written (none if it cannot be read)."""
    if templates.folder is None:
        return []
    try:
        return read_text(templates.folder / f"{template_id}.yaml").splitlines()
    except InvalidJourney:
        return []


def _found(lines: list[str], row: int, path: str, col: int) -> int:
    """Where `path` (or its last name, spelt `['...']`) stands on line `row`, else `col`."""
    if 0 < row <= len(lines):
        for form in (path, path.rsplit(".", 1)[-1]):
            found = lines[row - 1].find(form)
            if found >= 0:
                return found + 1
    return col


def _column(lines: list[str], row: int, name: str, col: int, at: int) -> int:
    """Where `profile.traits.<name>` stands on line `row` of the file (1-based), else the
    part's own column (its first line) or 1."""
    if 0 < row <= len(lines):
        for form in (f"profile.traits.{name}", f"profile.traits['{name}']",
                     f'profile.traits["{name}"]'):
            found = lines[row - 1].find(form)
            if found >= 0:
                return found + 1
    return col if at == 1 else 1


def _read(text: str, env: jinja2.Environment) -> list[tuple[str, int]]:
    try:
        return unguarded_traits(text, env)
    except jinja2.TemplateSyntaxError:
        return []  # an error of its own (TemplateLibrary.check)


def _message(name: str) -> str:
    return (f"warning: profile.traits.{name} has no fallback: a profile without it gets "
            f"no message (skipped as template_error); write "
            f"{{{{ profile.traits.{name} | default('...') }}}} or test it with "
            f"`is defined`")


def _trait(node: nodes.Node) -> str | None:
    """`profile.traits.<name>` or `profile.traits['<name>']`: the name."""
    if not isinstance(node, nodes.Getattr | nodes.Getitem):
        return None
    inner = node.node
    if not (isinstance(inner, nodes.Getattr) and inner.attr == "traits"
            and isinstance(inner.node, nodes.Name) and inner.node.name == "profile"):
        return None
    if isinstance(node, nodes.Getattr):  # `.get('plan', '')`: the dict's method
        return node.attr if node.attr not in DICT_METHODS else None
    arg = node.arg
    return arg.value if isinstance(arg, nodes.Const) and isinstance(arg.value, str) else None


def _defined(test: nodes.Node) -> tuple[frozenset[str], frozenset[str]]:
    """The traits known to be defined where `test` is true, and where it is false."""
    return defined_by(test, _trait)


def _walk(node: nodes.Node, guarded: frozenset[str], found: list[tuple[str, int]]) -> None:
    if isinstance(node, nodes.Filter) and node.name in FALLBACK_FILTERS:
        for child in (*node.args, *(kw.value for kw in node.kwargs)):
            _walk(child, guarded, found)  # `x | default(profile.traits.y)` reads y
        return
    if isinstance(node, nodes.Test) and node.name in PRESENCE_TESTS:
        return
    if isinstance(node, nodes.If):
        # {% if %} ... {% elif %} ... {% else %}: each branch knows the traits its own
        # test defines, and those the tests before it (all false there) define
        _walk(node.test, guarded, found)
        true, false = _defined(node.test)
        for statement in node.body:
            _walk(statement, guarded | true, found)
        after = guarded | false
        for branch in node.elif_:
            _walk(branch.test, after, found)
            true, false = _defined(branch.test)
            for statement in branch.body:
                _walk(statement, after | true, found)
            after |= false
        for statement in node.else_:
            _walk(statement, after, found)
        return
    if isinstance(node, nodes.CondExpr):  # `a if test else b`
        _walk(node.test, guarded, found)
        true, false = _defined(node.test)
        _walk(node.expr1, guarded | true, found)
        if node.expr2 is not None:
            _walk(node.expr2, guarded | false, found)
        return
    name = _trait(node)
    if name is not None:
        if name not in guarded and name not in ALWAYS_THERE:
            found.append((name, node.lineno))
        return
    for below in node.iter_child_nodes():
        _walk(below, guarded, found)
