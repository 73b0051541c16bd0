"""Message templates: the template file model, loading, checking and sandboxed rendering.

A template is `templates/<id>.yaml`; its string values are Jinja2 templates rendered in
a `SandboxedEnvironment` with `StrictUndefined`, so a template can neither reach Python
internals nor silently print an empty name.
"""

from __future__ import annotations

import contextlib
import html as htmllib
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import StrictUndefined, meta
from jinja2.sandbox import SandboxedEnvironment
from pydantic import Field, ValidationError, model_validator

from journeys import template_places as places
from journeys.base import Strict
from journeys.errors import InvalidJourney, Problem, TemplateRenderError
from journeys.header_text import one_line
from journeys.problems import pydantic_problems
from journeys.template_files import FolderLoader, inside, nested_problems, reference_problems
from journeys.template_includes import included_problems
from journeys.template_sandbox import LimitedEnvironment, render_part, undeclared_names
from journeys.template_shapes import file_problems, shape_problems, trait_problems
from journeys.textfile import read_text
from journeys.yamlsrc import load_yaml, plain

SCOPE = frozenset({"profile", "event", "trigger", "enrollment", "journey", "unsubscribe_url"})
CHANNEL_KINDS = {"email": "email", "sms": "body", "push": "body", "console": "body",
                 "file": "body", "webhook": "payload"}


class TemplateFile(Strict):
    channel: str
    description: str | None = None
    subject: str | None = None
    preheader: str | None = None
    from_: str | None = Field(default=None, alias="from")
    reply_to: str | None = None
    html: str | None = None
    html_file: str | None = None
    text: str | None = None
    body: str | None = None
    payload: dict[str, Any] | None = None
    track: bool = True  # false: no tracked links or open pixel in this template's email

    @model_validator(mode="after")
    def _parts(self) -> TemplateFile:
        kind = CHANNEL_KINDS.get(self.channel, "body")
        if kind == "email":
            if not self.subject:
                raise ValueError("an email template needs a 'subject'")
            if not (self.html or self.html_file or self.text):
                raise ValueError("an email template needs 'html', 'html_file' or 'text'")
            if self.html and self.html_file:
                raise ValueError("use either 'html' or 'html_file', not both")
        elif kind == "payload" and self.payload is None:
            raise ValueError(f"a {self.channel} template needs a 'payload' mapping")
        elif kind == "body" and self.body is None:
            raise ValueError(f"a {self.channel} template needs a 'body'")
        return self


@dataclass(frozen=True, slots=True)
class Rendered:
    """What a channel adapter sends."""

    template: str
    channel: str
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    body: str | None = None
    payload: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        """The fields as a JSON document (the outbox row's `rendered`; `Rendered(**doc)`
        reads it back). `dataclasses.asdict` without its deep copy of the payload and
        headers, which the JSON encoder does not need (1.5% of the worker's time)."""
        return {"template": self.template, "channel": self.channel, "subject": self.subject,
                "html": self.html, "text": self.text, "body": self.body,
                "payload": self.payload, "headers": self.headers}

    def with_parts(self, *, html: str | None, text: str | None,
                   headers: dict[str, str]) -> Rendered:
        """A copy with these HTML and text parts and headers (an email's, once its links
        are tracked and its unsubscribe headers added): `dataclasses.replace` without its
        look at every field's definition (~1 us against ~2, once per email sent where
        `replace` ran once or twice)."""
        return Rendered(self.template, self.channel, self.subject, html, text, self.body,
                        self.payload, headers)

    @property
    def summary(self) -> str:
        """The plain-text part a person reads: text, SMS body or the JSON payload."""
        if self.text is not None:
            return self.text
        if self.body is not None:
            return self.body
        return json.dumps(self.payload, sort_keys=True, default=str)


def make_environment(folder: Path | None = None) -> SandboxedEnvironment:
    # FolderLoader: no file outside the folder, symbolic links or not
    loader = FolderLoader(folder) if folder is not None else None
    # auto_reload=False: a library is loaded once and replaced whole when its folder
    # changes, so Jinja's own check (an os.stat of the file behind every `extends` or
    # `include`, at every render) only cost time: a fifth of the worker's CPU in
    # journey_bench, on the welcome e-mail's base layout.
    # LimitedEnvironment: no compile-time evaluation, `*` and `**` checked
    # (journeys/template_sandbox.py).
    return LimitedEnvironment(undefined=StrictUndefined, loader=loader, autoescape=False,
                              auto_reload=False)


_STRING_ENV = make_environment()
# A template's Jinja2 parts (`Template`'s fields, rendered by `TemplateLibrary.render`),
# and those that are HTML: rendered with autoescape
PARTS = ("subject", "html", "html_file", "text", "body")
HTML_PARTS = frozenset({"html", "html_file"})


def undeclared(source: str, env: jinja2.Environment = _STRING_ENV) -> set[str]:
    """Names a Jinja2 source reads from its context (raises TemplateSyntaxError)."""
    return undeclared_names(env, env.parse(source))


def _flat_globals(template: jinja2.Template) -> jinja2.Template:
    """The template with its globals in one dict instead of Jinja2's ChainMap (the
    template's own over the environment's). Every `render` copies them into a new
    context (`dict(globals, **vars)`), and copying a ChainMap walks it key by key in
    Python: 10 of a short template's 14.5 us per render. The environments here never
    change their globals after they are made, so the copy taken now stays right."""
    template.globals = dict(template.globals)
    return template


@lru_cache(maxsize=4096)
def _compiled_string(source: str) -> jinja2.Template:
    """Inline strings are few and rendered often: compile each once."""
    return _flat_globals(_STRING_ENV.from_string(source))


def render_string(source: str, context: Mapping[str, Any]) -> str:
    """Render one inline Jinja2 string (used for `send.to`, `emit`, `update_profile`,
    `set_data`). Any exception while rendering -- a `TypeError` from
    `{{ code + 1000 }}` as much as an undefined name -- is a TemplateRenderError naming
    the string (and its line, when it has several)."""
    if "{" not in source:
        return source
    try:
        return render_part(_compiled_string(source), context)
    except Exception as exc:
        line = _template_line(exc)
        where = f" (line {line[1]})" if line is not None and "\n" in source else ""
        raise TemplateRenderError.at(f"cannot render {source!r}{where}", exc,
                                     _describe(exc)) from None


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return render_string(value, context)
    if isinstance(value, dict):
        return {k: render_value(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, context) for v in value]
    return value


def _describe(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, jinja2.TemplateError) else str(exc)
    if isinstance(exc, jinja2.UndefinedError) and text:  # what to do, for the marketer
        text += (" (missing for this person or event: write `| default('...')` after it, "
                 "or test it with `is defined`)")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _template_line(exc: BaseException) -> tuple[str | None, int] | None:
    """(template file name or None for an inline string, line) where `exc` was raised
    in template code: the innermost template frame of the traceback Jinja2 rewrote (its
    frames carry the template's own file and line), or a syntax error's position."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return exc.filename, exc.lineno
    found = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_globals.get("__jinja_exception__") is exc:
            name = tb.tb_frame.f_code.co_filename
            found = (None if name == "<template>" else name, tb.tb_lineno)
        tb = tb.tb_next
    return found


# The text part of an e-mail, derived from its HTML: one pass of regular expressions
# over the markup. html.parser did the same work a character class at a time and was
# 4% of the worker's time (one call per e-mail sent). A tag, a comment, a declaration
# (`<!doctype ...>`), a processing instruction or a stray end tag (`</>`, `</ a>`);
# anything else, `<` included when no tag follows it, is text. An attribute value may
# hold `>` or `<` inside its quotes, not outside: a tag ends its look at the next `<`,
# so text full of unclosed tags (`<a<a<a`) is read in one pass instead of once from
# every `<` (quadratic).
_MARKUP = re.compile(r"""<!--.*?(?:-->|\Z)|<[!?][^>]*>?|</(?![a-zA-Z])[^>]*>?"""
                     r"""|<(/?)([a-zA-Z][a-zA-Z0-9:-]*)((?:[^<>"']|"[^"]*"|'[^']*')*+)>""",
                     re.DOTALL)
# One attribute: its name, then its value if it has one. Read from the tag's attribute
# text in order, so an `href=` inside another attribute's quoted value (a profile's
# trait in a title) is part of that value, never a link.
_ATTRIBUTE = re.compile(r"""([^\s"'<>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?""")
_BREAKS = frozenset({"p", "br", "div", "h1", "h2", "h3", "li", "tr"})
_HIDDEN = frozenset({"style", "script"})  # their content is not text


def _href(attributes: str) -> str | None:
    """The last `href` of a tag's attribute text (as html.parser's dict kept it)."""
    found = None
    for match in _ATTRIBUTE.finditer(attributes):
        if match.group(1).lower() == "href":
            value = next((v for v in match.groups()[1:] if v is not None), None)
            found = None if value is None else htmllib.unescape(value)
    return found


def html_to_text(source: str) -> str:
    """Text for the HTML of a message: a line break before each block, a link's address
    after its words, entities decoded, no markup, no style sheet or script."""
    parts: list[str] = []
    append = parts.append
    href: str | None = None
    at = 0
    tags = _MARKUP.finditer(source)  # what repeated searches from each tag's end find
    while (tag := next(tags, None)) is not None:
        start = tag.start()
        if start > at:
            text = source[at:start]
            append(htmllib.unescape(text) if "&" in text else text)
        at = tag.end()
        end_tag, name, attributes = tag.group(1, 2, 3)
        if not name:
            continue  # a comment, declaration, processing instruction or stray end tag
        name = name.lower()
        if end_tag:
            if name == "a" and href:
                append(f" ({href})")
                href = None
        elif name in _BREAKS:
            append("\n")
        elif name == "a":
            href = _href(attributes)
            if href and _closed(attributes):  # <a href="x"/>
                append(f" ({href})")
                href = None
        elif name in _HIDDEN and not _closed(attributes):
            # Skip to its end tag: no markup is read inside
            end = re.compile(rf"</{name}\s*>", re.IGNORECASE).search(source, at)
            at = len(source) if end is None else end.end()
            tags = _MARKUP.finditer(source, at)
    if at < len(source):
        append(htmllib.unescape(source[at:]))
    # Runs of spaces and tabs never span a line break: one pass over the whole text
    lines = _SPACES.sub(" ", "".join(parts)).splitlines()
    return "\n".join(line for line in map(str.strip, lines) if line).strip() + "\n"


def _closed(attributes: str) -> bool:
    """A self-closing tag's attribute text: <br/>, <a href="x"/>."""
    return attributes.rstrip().endswith("/")


# Runs of two or more spaces and tabs, or a lone tab: a lone space is already one space
# (a pass that replaced each of them with itself was a fifth of the conversion's time).
_SPACES = re.compile(r" [ \t]+|\t[ \t]*")


@dataclass
class TemplateLibrary:
    """The templates of one journeys folder, loaded and checked once."""

    folder: Path | None
    templates: dict[str, TemplateFile] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # template id -> file name, for errors

    def __post_init__(self) -> None:
        self._env = make_environment(self.folder)
        self._html_env = make_environment(self.folder)
        self._html_env.autoescape = True
        self._compiled: dict[tuple[str, str], jinja2.Template] = {}
        self.texts: dict[str, list[str]] = {}  # template id -> its Jinja2 parts (check())
        self.link_hosts: dict[str, frozenset[str]] = {}  # journeys/template_links.py
        self.warnings: list[Problem] = []  # check()'s guarded reads of unknown attributes
        self._pulled: list[Problem] = []  # check()'s errors in files templates pull in

    def __contains__(self, template_id: str) -> bool:
        return template_id in self.templates

    def _compile(self, template_id: str, part: str, source: str) -> jinja2.Template:
        key = (template_id, part)
        compiled = self._compiled.get(key)
        if compiled is None:
            env = self._html_env if part in HTML_PARTS else self._env
            compiled = _flat_globals(env.get_template(source) if part == "html_file"
                                     else env.from_string(source))
            self._compiled[key] = compiled
        return compiled

    def render(self, template_id: str, context: Mapping[str, Any]) -> Rendered:
        """Render every part of a template. Raises TemplateRenderError for any failure,
        whatever its type (an undefined name, a sandbox refusal, a `TypeError` in an
        expression), naming the template, the part and, where known, file and line."""
        tpl = self.templates.get(template_id)
        if tpl is None:
            raise TemplateRenderError(f"template {template_id!r} does not exist")

        def part(name: str, source: str | None) -> str | None:
            if source is None:
                return None
            try:
                return render_part(self._compile(template_id, name, source), context)
            except Exception as exc:
                raise self._failure(template_id, (name,), source, exc) from None

        def value(where: Where, item: Any) -> Any:  # payload, from, reply_to
            if isinstance(item, dict):
                return {k: value((*where, k), v) for k, v in item.items()}
            if isinstance(item, list):
                return [value((*where, i), v) for i, v in enumerate(item)]
            if not isinstance(item, str) or "{" not in item:
                return item
            try:
                return render_part(_compiled_string(item), context)
            except Exception as exc:
                raise self._failure(template_id, where, item, exc) from None

        html_out = part("html", tpl.html) or part("html_file", tpl.html_file)
        text_out = part("text", tpl.text)
        if text_out is None and html_out is not None:
            text_out = html_to_text(html_out)
        payload = value(("payload",), tpl.payload) if tpl.payload is not None else None
        headers = {}
        if tpl.from_:  # header values: one line (journeys/header_text.py)
            headers["From"] = one_line(str(value(("from",), tpl.from_)))
        if tpl.reply_to:
            headers["Reply-To"] = one_line(str(value(("reply_to",), tpl.reply_to)))
        return Rendered(
            template=template_id,
            channel=tpl.channel,
            subject=one_line(part("subject", tpl.subject) or "").strip() or None,
            html=html_out,
            text=text_out,
            body=part("body", tpl.body),
            payload=payload,
            headers=headers,
        )

    def compile_all(self) -> None:
        """Compile every template's parts now, not at their first render, with the
        layouts and includes their HTML names: a long-running process calls it as it
        starts (engine/service.py `Service.warm_up`). A part that does not compile is
        left to its render to report (loading refuses most: `check`)."""
        for template_id, tpl in self.templates.items():
            for name in PARTS:
                source = getattr(tpl, name)
                if source is None:
                    continue
                with contextlib.suppress(Exception):
                    self._compile(template_id, name, source)
                    if name in HTML_PARTS and self._html_env.loader is not None:
                        text = (self._html_env.loader.get_source(self._html_env, source)[0]
                                if name == "html_file" else source)
                        self._load_referenced(text, set())
            strings = [s for _, s in _strings(tpl.payload)] if tpl.payload is not None else []
            for text in (*strings, tpl.from_, tpl.reply_to):
                if isinstance(text, str) and "{" in text:
                    with contextlib.suppress(Exception):
                        _compiled_string(text)

    def _load_referenced(self, source: str, seen: set[str]) -> None:
        """The templates `source` extends, includes or imports, loaded into the HTML
        environment's cache (where `{% extends %}` finds them at render), and theirs."""
        env = self._html_env
        assert env.loader is not None
        for name in meta.find_referenced_templates(env.parse(source)):
            if name is None or name in seen:  # None: a name computed at render
                continue
            seen.add(name)
            env.get_template(name)
            self._load_referenced(env.loader.get_source(env, name)[0], seen)

    def _failure(self, template_id: str, where: Where, text: str,
                 exc: Exception) -> TemplateRenderError:
        """The render error for `exc`, raised rendering the part at `where`: `template
        'x' (templates/x.yaml:7, text): TypeError: ...`, or the HTML file's own line."""
        file = self.files.get(template_id)
        part = ".".join(str(w) for w in where)
        found = _template_line(exc)
        location = part
        if found is not None and found[0] is not None and self.folder is not None:
            path = Path(found[0])  # a template file: an html_file, its layout, an include
            shown = (str(Path(file).parent / path.relative_to(self.folder))
                     if file is not None and path.is_relative_to(self.folder) else str(path))
            location = f"{shown}:{found[1]}, {part}"
        elif file is not None:
            location = f"{file}, {part}"
            source = self.yaml_source(template_id)
            if source is not None and where[0] != "html_file":
                line, _ = source.position(where)
                if found is not None:  # block scalars start on the line after the key
                    line += found[1] - 1 + (1 if "\n" in text else 0)
                location = f"{file}:{line}, {part}"
        return TemplateRenderError.at(f"template {template_id!r} ({location})", exc,
                                      _describe(exc))

    def yaml_source(self, template_id: str) -> Any:
        """The template's YAML with positions (for the line of a render error), or None."""
        path = self.folder / f"{template_id}.yaml" if self.folder is not None else None
        if path is None or not path.is_file():
            return None
        try:
            return load_yaml(read_text(path), self.files.get(template_id, path.name))
        except InvalidJourney:
            return None

    def parts(self, template_id: str) -> list[tuple[Where, str]]:
        """A template's Jinja2 strings, each with where it is in its file (`html_file`'s
        file aside)."""
        tpl = self.templates[template_id]
        parts: list[tuple[Where, str]] = [
            ((name.rstrip("_"),), value) for name in
            ("subject", "preheader", "from_", "reply_to", "html", "text", "body")
            if (value := getattr(tpl, name)) is not None]
        if tpl.payload is not None:
            parts.extend((("payload", *w), s) for w, s in _strings(tpl.payload))
        return parts

    def check(self, known_traits: Collection[str] | None = None) -> list[Problem]:
        """Syntax errors and variables outside the template scope, for every template;
        with `known_traits` (a folder's traits.yaml), `profile.traits.X` must be one."""
        problems: list[Problem] = []
        seen: set[str] = set()  # files extended, included or imported: checked once
        pulled: set[tuple[object, ...]] = set()  # the same, for their attributes
        self._pulled, self.warnings = [], []
        for template_id, tpl in self.templates.items():
            file = self.files.get(template_id, f"templates/{template_id}.yaml")
            source, raw = None, []
            if self.folder is not None and (self.folder / f"{template_id}.yaml").exists():
                written = read_text(self.folder / f"{template_id}.yaml", file)
                source, raw = load_yaml(written, file), written.splitlines()
            parts = self.parts(template_id)
            self.texts[template_id] = [text for _, text in parts]
            for where, text in parts:
                problems.extend(_check_source(text, self._env, file, source, where, raw=raw))
                problems.extend(shape_problems(text, self._env, file, source, where, raw=raw))
                self.warnings.extend(shape_problems(text, self._env, file, source, where,
                                                    raw=raw, guarded=True))
                if where[0] in PARTS:  # rendered with the folder's loader
                    line, col = source.position(where) if source is not None else (1, 1)
                    problems.extend(reference_problems(
                        self._env, self.folder, text, file=file,
                        at=(line + (1 if "\n" in text else 0), col), seen=seen))
                    self._included(text, file, line + (1 if "\n" in text else 0), pulled)
                if known_traits is not None:
                    for guarded in (False, True):
                        (self.warnings if guarded else problems).extend(trait_problems(
                            text, self._env, file, source, where, raw=raw,
                            known=known_traits, guarded=guarded))
            if tpl.html_file is not None:
                assert self.folder is not None
                path = self.folder / tpl.html_file
                pos = source.position(("html_file",)) if source else (1, 1)
                if not path.is_file():
                    problems.append(Problem(file, *pos,
                                            f"html_file {tpl.html_file!r} does not exist"))
                elif not inside(self.folder, tpl.html_file):
                    problems.append(Problem(file, *pos, f"html_file {tpl.html_file!r} is "
                                            "outside the templates folder"))
                else:
                    problems.extend(_check_file(path, self._env))
                    self.warnings.extend(_check_file(path, self._env, guarded=True))
                    problems.extend(nested_problems(self._env, self.folder,
                                                    [tpl.html_file], seen))
                    with contextlib.suppress(InvalidJourney):  # said by _check_file
                        self._included(read_text(path), str(path), 1, pulled)
        return problems + self._pulled

    def _included(self, text: str, file: str, start: int, seen: set[tuple[object, ...]],
                  ) -> None:
        """The unknown attributes read in the files `text` includes, extends or imports
        (journeys/template_includes.py): errors kept for check() to return, warnings."""
        errors, warnings = included_problems(self._env, self.folder, text, file=file,
                                             start=start, seen=seen)
        self._pulled.extend(errors)
        self.warnings.extend(warnings)


Where = tuple[str | int, ...]


def _strings(value: Any, where: Where = ()) -> list[tuple[Where, str]]:
    if isinstance(value, str):
        return [(where, value)]
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in _strings(v, (*where, k))]
    if isinstance(value, list):
        return [x for i, v in enumerate(value) for x in _strings(v, (*where, i))]
    return []


def _check_source(text: str, env: jinja2.Environment, file: str, source: Any,
                  where: tuple[str | int, ...], *, raw: list[str]) -> list[Problem]:
    line, col = source.position(where) if source is not None else (1, 1)
    try:
        parsed = env.parse(text)
        names = undeclared_names(env, parsed)
    except jinja2.TemplateSyntaxError as exc:
        # Jinja's line is relative to the string; block scalars start on the next line.
        return [Problem(file, line + (exc.lineno or 1) - 1 + (1 if "\n" in text else 0), col,
                        f"template syntax error: {exc.message}")]
    lines = places.name_lines(parsed)  # each at the line and column that reads it
    return [Problem(file, *places.place(raw, (line, col), text, lines.get(name, 1),
                                        places.word(name)),
                    f"unknown variable {name!r} in template; in scope: "
                    + ", ".join(sorted(SCOPE)))
            for name in sorted(names - SCOPE)]


def _check_file(path: Path, env: jinja2.Environment, *, guarded: bool = False,
                ) -> list[Problem]:
    """An HTML file's problems (with `guarded`: its warnings)."""
    rel = str(path)  # `templates folder / html_file`: as the journeys folder was given
    try:
        text = read_text(path)
        names = undeclared(text, env)
    except InvalidJourney as exc:
        return [] if guarded else exc.problems
    except jinja2.TemplateSyntaxError as exc:
        return [] if guarded else [Problem(rel, exc.lineno or 1, 1,
                                           f"template syntax error: {exc.message}")]
    if guarded:
        return file_problems(text, env, rel, guarded=True)
    return [Problem(rel, 1, 1, f"unknown variable {name!r} in template") for name in
            sorted(names - SCOPE)] + file_problems(text, env, rel)


def load_templates(folder: Path, *, known_traits: Collection[str] | None = None,
                   ) -> tuple[TemplateLibrary, list[Problem]]:
    """Load every `*.yaml` in a templates folder; problems are collected, not raised, and
    name each file as the folder was given."""
    library = TemplateLibrary(folder if folder.is_dir() else None)
    problems: list[Problem] = []
    if not folder.is_dir():
        return library, problems
    for path in sorted(folder.glob("*.yaml")):
        display = str(path)
        try:
            source = load_yaml(read_text(path, display), display)
        except InvalidJourney as exc:
            problems.extend(exc.problems)
            continue
        try:
            tpl = TemplateFile.model_validate(plain(source.data))
        except ValidationError as exc:
            problems.extend(pydantic_problems(exc, source))
            continue
        library.templates[path.stem] = tpl
        library.files[path.stem] = display
    problems.extend(library.check(known_traits))
    return library, problems
