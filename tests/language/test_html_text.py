"""The text part derived from a message's HTML (journeys/templating.py, html_to_text).

It replaced a converter built on html.parser (4% of the worker's time): on the bundled
templates and on awkward markup it says the same, except where the old one was wrong
(a style sheet or script read as text; entities decoded twice)."""

from __future__ import annotations

import html as htmllib
import re
import time
from html.parser import HTMLParser

import pytest

from journeys.loader import load_path
from journeys.templating import html_to_text
from tests.conftest import LIBRARY


class _Reference(HTMLParser):
    """The converter html_to_text replaced, kept to compare against."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"p", "br", "div", "h1", "h2", "h3", "li", "tr"}:
            self.parts.append("\n")
        if tag == "a":
            self._href = dict(attrs).get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href:
            self.parts.append(f" ({self._href})")
            self._href = None

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def reference(source: str) -> str:
    parser = _Reference()
    parser.feed(source)
    text = htmllib.unescape("".join(parser.parts))
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.splitlines()]
    return "\n".join(line for line in lines if line).strip() + "\n"


def _bundled_html() -> list[str]:
    library = load_path(LIBRARY).templates
    sources = [t.html for t in library.templates.values() if t.html]
    sources.append((LIBRARY / "templates" / "layout.html").read_text())
    return sources


AWKWARD = [
    "<p>Hi Ana,</p><p>Your cart &amp; you.</p>",
    '<A HREF="https://x.example/?a=1&amp;b=2">Shop</A> now',
    "<a href='https://x.example/q'>single</a><a href=https://x.example/bare>bare</a>",
    '<a title="a > b" href="https://x.example/gt">quoted gt</a>',
    '<a href="">empty</a><a>none</a> text',
    "<!-- hidden --> shown <!doctype html><?xml version='1.0'?>",
    "a < b and c > d, 3<4",
    "<div>one<br>two<br/>three<BR />four</div><ul><li>x</li><li>y</li></ul>",
    "<table><tr><td>1</td><td>2</td></tr><tr><td>3</td></tr></table>",
    "  spaces \t and\ttabs   <p>  lead</p>\n\n\n<h1>Title</h1><h2>Sub</h2><h3>Small</h3>",
    "caf&eacute; &#233; &#x00e9; &nbsp;x &unknown; done",
    "<p>unclosed <b>bold <i>italic</p>",
    "<a href=\"https://x.example/one\">one<a href=\"https://x.example/two\">two</a>",
    "",
    "plain text, no markup",
    # Runs of spaces and tabs, collapsed in one pass over the text: never across a break
    "a \t b\t\tc  d \u2028 e\x0b f\r\ng\x85h \x0c  i",
    "<p>one  two</p>\t<p>\tthree \t</p> <br> \t <br>four",
]


@pytest.mark.parametrize("source", [*AWKWARD, *_bundled_html()])
def test_the_same_text_as_html_parser(source: str) -> None:
    assert html_to_text(source) == reference(source)


def test_style_sheets_and_scripts_are_not_text() -> None:
    source = ("<html><head><style>p { color: red } a > b {}</style>"
              "<script>if (a < b) { x = '</p>' }</script></head>"
              "<body><p>Hello</p><STYLE>.x{}</STYLE><p>after</p></body></html>")
    assert html_to_text(source) == "Hello\nafter\n"
    assert "color" in reference(source)  # what the old converter put in the text part


def test_a_link_is_read_from_its_own_href_attribute() -> None:
    """A profile's value in another attribute (autoescaping leaves spaces and `=`)
    must not become the link of the text part."""
    html = ('<a title="Offer for Ana href=https://evil.example/login" '
            'href="https://shop.example/cart">Your cart</a>')
    assert html_to_text(html) == "Your cart (https://shop.example/cart)\n"
    assert html_to_text('<a data-href="no" href=\'yes\'>x</a>') == "x (yes)\n"
    assert html_to_text('<a HREF="u" href="v">x</a>') == reference('<a HREF="u" href="v">x</a>')


def test_self_closing_tags() -> None:
    """`<script .../>` hides nothing after it; `<a href="..."/>` keeps its address."""
    code = "<p>Your code is 1234</p>"
    assert html_to_text('<p>Hello</p><script src="https://x.example/a.js"/>' + code) == (
        "Hello\nYour code is 1234\n")
    assert html_to_text('<style type="text/css"/>' + code) == "Your code is 1234\n"
    assert html_to_text('Reset: <a href="https://x.example/reset"/><p>Thanks') == (
        "Reset: (https://x.example/reset)\nThanks\n")


def test_markup_inside_a_script_is_not_read() -> None:
    code = "<p>Your code is 1234</p>"
    assert html_to_text('<script>var s = "<!--"; x = "<p>";</script>' + code) == (
        "Your code is 1234\n")
    assert html_to_text("<SCRIPT>a</script >" + code) == "Your code is 1234\n"


def test_text_after_a_bare_ampersand_is_kept() -> None:
    """html.parser held back the text after a bare `&` at the end, waiting for more."""
    assert html_to_text("<p>Salt &amp; pepper &") == "Salt & pepper &\n"
    assert reference("<p>Salt &amp; pepper &") == "\n"


def test_entities_are_decoded_once() -> None:
    assert html_to_text("<p>Write &amp;lt;b&amp;gt; for bold</p>") == "Write &lt;b&gt; for bold\n"
    assert html_to_text('<a href="https://x.example/?q=&amp;amp;">x</a>') == (
        "x (https://x.example/?q=&amp;)\n")


@pytest.mark.parametrize("run", ["<a", "<a '", '<a "x" ', "<!--", "<!x"])
def test_a_long_run_of_unclosed_tags_is_read_once(run: str) -> None:
    """Markup that never closes its tags is text, read in one pass: 20,000 of them took
    ~20 s when every `<` started a look to the end of the text."""
    source = "<p>start</p>" + run * 20_000 + " end"
    started = time.perf_counter()
    text = html_to_text(source)
    assert time.perf_counter() - started < 1
    assert text.startswith("start")
