"""Host names of links: how a URL's host is read, and the set of hosts a message's
links may be tracked to (why: journeys/template_links.py, docs/engagement.md)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from functools import lru_cache

# A host written literally after http(s)://: ends where a host ends (not at `{`, where
# an expression would go on writing it).
_LITERAL = re.compile(r"https?://([\w.-]+)(?![\w.-]|\{)", re.IGNORECASE)
# The authority of an http(s) URL: a browser ends it at the first / \ ? or #.
_AUTHORITY = re.compile(r"https?://([^/\\?#]*)", re.IGNORECASE)
_ASCII_HOST = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_")


def _host_char(c: str) -> bool:
    """A character a trusted host may hold: ASCII letters, digits, `.-_`, and the letters
    and marks of an internationalized name (no `%`, no punctuation a browser maps to a
    dot or a slash)."""
    return c in _ASCII_HOST or (c > "\x7f" and unicodedata.category(c)[0] in "LM")


_ASCII_NAME = re.compile(r"[a-z0-9_-][a-z0-9._-]*")


def host_name(text: str) -> str | None:
    """`text` lowercased if it is a host name as trusted hosts are written, else None."""
    host = text.lower()
    if host.isascii():  # the common case, in one match
        return host if _ASCII_NAME.fullmatch(host) else None
    if not host or host.startswith(".") or not all(_host_char(c) for c in host):
        return None
    return host


def url_host(url: str) -> str | None:
    """The host of an http(s) URL, lowercased, if it can be read unambiguously; else None
    (an untrusted link)."""
    found = _AUTHORITY.match(url)
    if found is None:
        return None
    authority = found.group(1)
    host, _, port = authority.partition(":")
    if port and not port.isdigit():
        return None
    return host_name(host)


def literal_hosts(source: str) -> set[str]:
    """The hosts written literally after http(s):// in a template's source."""
    return {host for m in _LITERAL.finditer(source) if (host := host_name(m.group(1)))}


@dataclass(frozen=True, slots=True)
class TrustedHosts:
    """The hosts a message's links may be tracked to: exact names, and suffixes
    (`*.shop.example` as `.shop.example`: every subdomain, not the name itself)."""

    exact: tuple[Collection[str], ...]
    suffixes: tuple[str, ...] = ()

    @classmethod
    @lru_cache(maxsize=256)
    def listed(cls, names: tuple[str, ...]) -> TrustedHosts:
        """`of(names)`, made once per list (a policy's list, at every send)."""
        return cls.of(names)

    @classmethod
    def of(cls, *groups: Iterable[str]) -> TrustedHosts:
        """From names as written in `tracking: hosts:` (`*.x` a wildcard)."""
        names = [name.lower() for group in groups for name in group]
        return cls((frozenset(n for n in names if not n.startswith("*.")),),
                   tuple(n[1:] for n in names if n.startswith("*.")))

    def allows(self, url: str) -> bool:
        host = url_host(url)
        return host is not None and self.allows_host(host)

    def allows_host(self, host: str) -> bool:
        return any(host in group for group in self.exact) or host.endswith(self.suffixes)

    def adding(self, hosts: Collection[str]) -> TrustedHosts:
        return TrustedHosts((*self.exact, hosts), self.suffixes)


def check_host_pattern(value: str) -> str:
    """A `tracking: hosts:` entry: a host name, or `*.` and one with at least one dot."""
    name = value.strip().lower()
    bare = name.removeprefix("*.")
    if "://" in name or "/" in name:
        raise ValueError(f"{value!r}: write the host alone (shop.example), not a URL")
    if host_name(bare) is None or (name.startswith("*.") and "." not in bare.strip(".")):
        raise ValueError(f"{value!r} is not a host name (shop.example, or *.shop.example "
                         "for its subdomains)")
    return name


__all__ = ["TrustedHosts", "check_host_pattern", "host_name", "literal_hosts", "url_host"]
