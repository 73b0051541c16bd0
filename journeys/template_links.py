"""Which hosts an email's tracked links may lead to (docs/engagement.md, "Which links are
tracked").

A tracked link is `<public URL>/c/<token>` answering 302 to the URL in the signed token.
The signature proves only that we rendered the URL, not who chose it: a link built from
data (`<a href="{{ profile.traits.website }}">`, an event's property) lets anyone who can
set a trait (a public write key sends `identify`) have us mail them a link on our own
tracking domain that redirects to their site, an open redirect for phishing. So a link
is tracked only if its host is trusted:

- a host written literally in the template's own source: its parts, its `html_file` and
  the layouts and includes those name (`https://shop.example/{{ path }}` trusts
  `shop.example`; `https://{{ domain }}/` and `https://shop.example{{ rest }}` trust
  nothing: their host is not all written);
- a host the policy lists (`tracking: {hosts: [shop.example, "*.shop.example"]}`);
- the public URL's own host.

Any other link is sent as written: it still works, it is just not tracked. `url_host`
reads a URL's host the way a browser would reach it, and refuses (None: untrusted)
whatever it cannot read unambiguously: userinfo (`https://shop.example@evil.example`),
a percent-encoded or odd character, an authority that starts with a slash.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import jinja2
from jinja2 import meta, nodes

from journeys.link_hosts import literal_hosts
from journeys.template_fallbacks import path_of
from journeys.templating import TemplateLibrary, make_environment


def source_hosts(env: jinja2.Environment, sources: Iterable[str],
                 html_files: Iterable[str] = ()) -> frozenset[str]:
    """The literal hosts of a template: its parts (`sources`), its HTML files, and the
    layouts and includes they name, as far as they can be read (a name computed at
    render, a file missing: skipped; rendering reports those)."""
    hosts: set[str] = set()
    seen: set[str] = set()
    pending = list(sources)
    for file in html_files:
        pending.extend(_file(env, file, seen))
    while pending:
        text = pending.pop()
        hosts |= literal_hosts(text)
        try:
            names = meta.find_referenced_templates(env.parse(text))
        except jinja2.TemplateSyntaxError:
            continue
        for name in names:
            if name is not None:
                pending.extend(_file(env, name, seen))
    return frozenset(hosts)


def template_hosts(library: TemplateLibrary, template_id: str) -> frozenset[str]:
    """The literal hosts of one template of `library` (computed once; a library is
    replaced whole when its folder changes)."""
    hosts = library.link_hosts.get(template_id)
    if hosts is None:
        tpl = library.templates.get(template_id)
        if tpl is None:
            return frozenset()
        hosts = library.link_hosts[template_id] = source_hosts(
            make_environment(library.folder), [text for _, text in library.parts(template_id)],
            [tpl.html_file] if tpl.html_file is not None else [])
    return hosts


def _file(env: jinja2.Environment, name: str, seen: set[str]) -> list[str]:
    if name in seen or env.loader is None:
        return []
    seen.add(name)
    try:
        return [env.loader.get_source(env, name)[0]]
    except (jinja2.TemplateNotFound, OSError, UnicodeDecodeError):
        return []


# `href=` whose value starts with an expression or statement, or an http(s) URL whose
# host is not all written: its host comes from data (journeys/template_guards.py warns).
DATA_LINK = re.compile(r"""\bhref\s*=\s*["']?\s*\{[{%]|https?://[\w.-]*\{[{%]""",
                       re.IGNORECASE)
_UNSUBSCRIBE = re.compile(r"-?\s*unsubscribe_url\s*-?[}%]}")  # its own signed page: kept
_TAG = re.compile(r"<a\b[^>]*>", re.IGNORECASE)
_NO_TRACK = re.compile(r"""\bdata-track\s*=\s*["']?false\b""", re.IGNORECASE)


def data_links(text: str) -> list[tuple[int, int, str]]:
    """(line, column, the link as written) of each link in `text` whose host comes from
    data, 1-based, but those in an `<a>` marked `data-track="false"`."""
    quiet = [(m.start(), m.end()) for m in _TAG.finditer(text) if _NO_TRACK.search(m[0])]
    found = []
    for m in DATA_LINK.finditer(text):
        if any(start <= m.start() < end for start, end in quiet) or _UNSUBSCRIBE.match(
                text, m.end()):
            continue
        line = text.count("\n", 0, m.start()) + 1
        column = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
        found.append((line, column, _shown(text, m.start())))
    return found


def _shown(text: str, start: int) -> str:
    """The link as written, up to its expression's end (at most 80 characters)."""
    end = text.find("}}", start)
    end = text.find("%}", start) if end < 0 else end
    snippet = text[start:end + 2 if end >= 0 else len(text)].split("\n", maxsplit=1)[0]
    return snippet if len(snippet) <= 80 else snippet[:77] + "..."


# A data path whose last name says it holds a URL: `website`, `site`, `url`,
# `product_url`, `link`, `homepage`, `href`, `uri` (a plural too), not `link_text`
URL_NAME = re.compile(r"(?:^|_)(?:url|uri|link|href|website|site|homepage|web)s?$", re.I)
DATA_ROOTS = frozenset({"profile", "event", "trigger", "enrollment"})
# right after written URL text (`https://shop.example/{{ x }}`) or in an attribute's
# value (`href="{{ x }}"`): DATA_LINK's to say, or a trusted host's
_URL_BEFORE = re.compile(r"""(?:https?://\S*|=\s*["']?\s*)$""", re.IGNORECASE)


def data_urls(text: str, env: jinja2.Environment) -> list[tuple[int, str]]:
    """(line, the path as written) of each `{{ ... }}` of `text` that prints, as it is or
    through filters, a data path whose name says it holds a URL (`URL_NAME`), but one
    right after written URL text or in an attribute (`_URL_BEFORE`); none for a text
    that does not parse."""
    try:
        parsed = env.parse(text)
    except jinja2.TemplateSyntaxError:
        return []
    found: list[tuple[int, str]] = []
    for output in parsed.find_all(nodes.Output):
        before = ""
        for node in output.nodes:
            if isinstance(node, nodes.TemplateData):
                before = node.data
                continue
            expr: nodes.Node = node
            while isinstance(expr, nodes.Filter) and expr.node is not None:
                expr = expr.node  # `{{ x | default('') | trim }}` prints x
            path = path_of(expr)
            if (path is not None and len(path) > 1 and path[0] in DATA_ROOTS
                    and URL_NAME.search(path[-1]) and not _URL_BEFORE.search(before)):
                found.append((expr.lineno, ".".join(path)))
            before = ""
    return found


def data_url_message(path: str) -> str:
    return (f"warning: {{{{ {path} }}}} may print a URL (its name says so) in the text part; "
            "a URL read from data is tracked only if its host is written in the "
            "template or listed in the policy's tracking: hosts:, else it is sent as "
            "written, untracked (no Email Clicked for it); to track it, write its host "
            "(https://shop.example/{{ ... }}) or list it (docs/engagement.md)")


def link_message(link: str) -> str:
    return (f"warning: the host of the link {link} comes from data: it is sent as "
            "written, not tracked, unless its host is listed in the policy's tracking: "
            "hosts: (a tracked redirect to a host anyone can set would be an open "
            "redirect; docs/engagement.md); data-track=\"false\" on the <a> says it is meant")


__all__ = ["DATA_LINK", "data_links", "data_url_message", "data_urls", "link_message",
           "source_hosts", "template_hosts"]
