"""Tracked clicks and opens (docs/engagement.md).

Links: every http(s) link of an email's HTML and text parts to a trusted host is
rewritten, when the message is rendered, to `<public URL>/c/<token>`; the token names
the message (its send key), the link's 1-based position and the URL, and is HMAC-signed
with the unsubscribe secrets (engine/runtime/signing.py; a key of its own is derived
from each). A click answers 302 to the URL in the token, so `/c/` reaches only URLs that
were in a message we rendered, and an altered token is refused (404). Opens: a 1x1
pixel `<public URL>/o/<token>` at the end of the HTML.

Trusted hosts (journeys/template_links.py): those written in the template's own source,
those the policy lists (`tracking: hosts:`) and the public URL's. A signed token proves
we rendered the URL, not who chose it: a link built from data (`href="{{
profile.traits.website }}"`) would let anyone who can set a trait get a link on our
tracking domain that redirects to their site (an open redirect, for phishing). Such a
link is sent as written: it works, untracked (`journeyman validate` and `preview` say
so). Tokens already sent are verified as before, whatever their host.

Not rewritten: the unsubscribe link (it has its own signed page), links marked
`data-track="false"`, non-http links (mailto:, tel:), and everything when tracking is
off for the template (`track: false`), the journey or the policy (`tracking:`).

The scanner rule: security gateways and mail privacy proxies fetch every link of a
message as it arrives. A click is counted as a person's only if it is a GET, carries a
User-Agent that names no known scanner, and arrives at least `scanner_window` (policy,
default 5 s) after the message was delivered. A filtered click still redirects, and is
recorded with `human=False` and its reason, so what is filtered is counted; only a
person's click becomes an `Email Clicked` event that journeys can `wait_for`.

Replays: each request wrote an engagement row (and an event), so a loop replaying one
link filled the database. `Recorder` records at most RECORD_LIMIT like engagements per
RECORD_WINDOW and answers the rest without writing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from engine.core.times import iso
from engine.ports import Engagement, OutboxRecord, Store
from engine.runtime.events import normalize
from engine.runtime.identity import person_of
from engine.runtime.tokens import b64, unb64
from engine.runtime.unsubscribe import ANONYMOUS, PROFILE, SigningSecret
from journeys.link_hosts import TrustedHosts, url_host
from journeys.templating import Rendered

CLICKED, OPENED = "Email Clicked", "Email Opened"
DEFAULT_SCANNER_WINDOW = timedelta(seconds=5)
# At most RECORD_LIMIT clicks of one link of one message (opens of one message), a
# person's and a scanner's each, are recorded per RECORD_WINDOW: each request wrote a
# row (and a person's an event), so a loop replaying one link filled the database. A
# person clicking again within the hour is counted up to 10 times; any further request
# is still answered (redirect, image), just not written.
RECORD_LIMIT = 10
RECORD_WINDOW = timedelta(hours=1)
_CLICK, _OPEN = "c1", "o1"
# User-Agents of link scanners and prefetchers (security gateways, chat previews, bots).
SCANNER_AGENTS = re.compile(
    r"bot\b|crawler|spider|scanner|preview|prefetch|barracuda|mimecast|proofpoint|"
    r"safelinks|urldefense|trendmicro|forcepoint|symantec|messagelabs|zscaler|"
    r"fortiguard|sophos|ironport|headless|slurp|facebookexternalhit", re.IGNORECASE)
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")

_ANCHOR = re.compile(r"<a\b[^>]*>", re.IGNORECASE)
_HREF = re.compile(r"""(\bhref\s*=\s*)(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE)
_NO_TRACK = re.compile(r"""\bdata-track\s*=\s*["']?false\b""", re.IGNORECASE)
_TEXT_URL = re.compile(r"""https?://[^\s<>"'()\[\]]+""")
_TRAILING = ".,;:!?"


class TrackingLinks:
    """Signed click, open and message tokens; the first secret signs, every secret still
    valid verifies (rotation as for unsubscribe links)."""

    def __init__(self, secrets: Sequence[SigningSecret], base_url: str) -> None:
        if not secrets:
            raise ValueError("tracking links need a secret")
        self._keys = [(hashlib.sha256(b"journeyman-tracking:" + s.value.encode()).digest(), s)
                      for s in secrets]
        self.base_url = base_url.rstrip("/")
        self.host = url_host(self.base_url)  # a link to it is always tracked
        # told how many links of a message were left untracked for their host (metrics)
        self.on_untracked: Callable[[int], None] | None = None

    @staticmethod
    def _sign(key: bytes, payload: str) -> str:
        return b64(hmac.new(key, payload.encode(), hashlib.sha256).digest()[:18])

    def _token(self, *parts: str) -> str:
        payload = b64("\n".join(parts).encode())
        return f"{payload}.{self._sign(self._keys[0][0], payload)}"

    def _verify(self, token: str, kind: str, count: int,
                now: datetime | None) -> list[str] | None:
        payload, _, signature = token.partition(".")
        if not payload or not token.isascii() or not any(
                secret.valid_at(now) and hmac.compare_digest(signature, self._sign(key, payload))
                for key, secret in self._keys):
            return None
        try:
            parts = unb64(payload).decode().split("\n", count)
        except (ValueError, UnicodeDecodeError):
            return None
        return parts[1:] if len(parts) == count + 1 and parts[0] == kind else None

    def click_url(self, key: str, position: int, url: str) -> str:
        return f"{self.base_url}/c/{self._token(_CLICK, key, str(position), url)}"

    def open_url(self, key: str) -> str:
        return f"{self.base_url}/o/{self._token(_OPEN, key)}"

    def verify_click(self, token: str, now: datetime | None = None) -> tuple[str, int, str] | None:
        """(send key, link position, URL) of a genuine click token, else None."""
        parts = self._verify(token, _CLICK, 3, now)
        if parts is None or not parts[1].isdigit():
            return None
        return parts[0], int(parts[1]), parts[2]

    def verify_open(self, token: str, now: datetime | None = None) -> str | None:
        parts = self._verify(token, _OPEN, 1, now)
        return parts[0] if parts else None


# --- rewriting a rendered email --------------------------------------------------------


def rewrite(rendered: Rendered, key: str, links: TrackingLinks, *, clicks: bool,
            opens: bool, hosts: TrustedHosts, keep: Collection[str] = (),
            refused: dict[str, None] | None = None) -> Rendered:
    """The message with its links tracked (`clicks`) and an open pixel (`opens`). Only
    links to `hosts` (or the public URL's host) are tracked, the others go in `refused`
    (the module docstring); URLs starting with one of `keep` (the unsubscribe link) stay
    as they are."""
    html_part, text_part = tracked_parts(rendered.html, rendered.text, key, links,
                                         clicks=clicks, opens=opens, hosts=hosts, keep=keep,
                                         refused=refused)
    return replace(rendered, html=html_part, text=text_part)


def tracked_parts(html_part: str | None, text_part: str | None, key: str,
                  links: TrackingLinks, *, clicks: bool, opens: bool, hosts: TrustedHosts,
                  keep: Collection[str] = (), refused: dict[str, None] | None = None,
                  ) -> tuple[str | None, str | None]:
    """`rewrite`'s HTML and text parts, for a caller that builds the message once."""
    # a link's tracked URL, signed once (the HTML's and the text's); its position is the
    # order in which the links were first seen
    urls: dict[str, str] = {}
    untracked: set[str] = set()
    left: dict[str, None] = {}  # untracked for their host, in order
    kept = tuple(keep)

    def tracked(url: str) -> str | None:
        if (not url.lower().startswith(("http://", "https://")) or url in untracked
                or url.startswith(kept)):
            return None
        new = urls.get(url)
        if new is None:
            host = url_host(url)
            if host is None or not (host == links.host or hosts.allows_host(host)):
                untracked.add(url)  # sent as written: no redirect of ours to it
                left[url] = None
                return None
            new = urls[url] = links.click_url(key, len(urls) + 1, url)
        return new

    def anchor(match: re.Match[str]) -> str:
        tag = match.group(0)
        found = _HREF.search(tag)
        if found is None:
            return tag
        url = html.unescape(next(g for g in found.groups()[1:] if g is not None))
        if _NO_TRACK.search(tag):
            untracked.add(url)
            return tag
        new = tracked(url)
        if new is None:
            return tag
        return f'{tag[:found.start()]}{found.group(1)}"{html.escape(new)}"{tag[found.end():]}'

    def text_url(match: re.Match[str]) -> str:
        url = match.group(0)
        tail = ""
        while url and url[-1] in _TRAILING:
            url, tail = url[:-1], url[-1] + tail
        return (tracked(url) or url) + tail

    if clicks and html_part is not None:
        html_part = _ANCHOR.sub(anchor, html_part)
    if clicks and text_part is not None:
        text_part = _TEXT_URL.sub(text_url, text_part)
    if left:
        if refused is not None:
            refused.update(left)
        if links.on_untracked is not None:
            links.on_untracked(len(left))
    if opens and html_part is not None:
        pixel = (f'<img src="{html.escape(links.open_url(key))}" width="1" height="1" '
                 'alt="" style="display:none">')
        at = html_part.lower().rfind("</body>")
        html_part = (html_part[:at] + pixel + html_part[at:]) if at >= 0 else html_part + pixel
    return html_part, text_part


# --- recording a click or an open -----------------------------------------------------


def scanner_reason(method: str, user_agent: str | None, delivered_at: datetime | None,
                   now: datetime, window: timedelta) -> str | None:
    """Why a click is a scanner's and not a person's (None: a person's). The rule of
    docs/engagement.md: a HEAD request, no User-Agent or one naming a scanner, or a
    click sooner than `window` after delivery."""
    if method.upper() == "HEAD":
        return "head_request"
    if not user_agent:
        return "no_user_agent"
    if SCANNER_AGENTS.search(user_agent):
        return "scanner_user_agent"
    if delivered_at is not None and now - delivered_at < window:
        return "too_soon_after_delivery"
    return None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a tracked request did: the engagement recorded (None: the message is not
    known any more, or the bound was reached: `limited`) and whether an event was queued
    for the person."""

    engagement: Engagement | None
    queued: bool
    limited: bool = False


class Recorder:
    """Records clicks and opens in one transaction each: the engagement row, and (for a
    person's click, and every open) the `Email Clicked`/`Email Opened` event in the
    person's inbox, handled in order with their other events."""

    def __init__(self, store: Store, now: Callable[[], datetime], new_id: Callable[[], str],
                 *, scanner_window: timedelta = DEFAULT_SCANNER_WINDOW,
                 limit: int = RECORD_LIMIT, window: timedelta = RECORD_WINDOW) -> None:
        self.store = store
        self.now = now
        self.new_id = new_id
        self.scanner_window = scanner_window
        self.limit, self.window = limit, window

    def click(self, key: str, position: int, url: str, *, method: str,
              user_agent: str | None) -> Outcome:
        now = self.now()
        record = self.store.sent_message(key)
        if record is None:
            return Outcome(None, queued=False)
        reason = scanner_reason(method, user_agent, record.sent_at, now, self.scanner_window)
        engagement = _engagement("click", record, now, url=url, position=position,
                                 human=reason is None, reason=reason)
        event = None if reason else self._event(CLICKED, record, now,
                                                {"url": url, "link_position": position})
        return self._record(engagement, event, now)

    def open(self, key: str, *, user_agent: str | None) -> Outcome:
        now = self.now()
        record = self.store.sent_message(key)
        if record is None:
            return Outcome(None, queued=False)
        # Every open counts (opens are an upper bound; the reason is in the docs): a
        # proxy's fetch cannot be told from a person's.
        reason = "no_user_agent" if not user_agent else None
        engagement = _engagement("open", record, now, reason=reason)
        return self._record(engagement, self._event(OPENED, record, now, {}), now)

    def _event(self, name: str, record: OutboxRecord, now: datetime,
               extra: Mapping[str, Any]) -> dict[str, Any]:
        entry = record.entry
        enrollment = self.store.get_enrollment(entry.enrollment_id)
        # A merge moves enrollments, not outbox rows: the enrollment names the person now.
        profile_id = enrollment.profile_id if enrollment is not None else entry.profile_id
        person = person_of(self.store, profile_id)
        who = ({"anonymousId": person.value} if person.kind == ANONYMOUS
               else {"userId": person.value if person.kind != PROFILE else profile_id})
        variants = dict(enrollment.variants) if enrollment is not None else {}
        raw = {"type": "track", "event": name, **who, "timestamp": iso(now),
               "properties": {"message_id": entry.key, "journey": entry.journey,
                              "step": entry.step, "template": entry.rendered.template,
                              "variant": ",".join(variants.values()) or None,
                              "variants": variants, **extra},
               "context": {"source": "tracking"}}
        return normalize(raw, now=now, message_id=self.new_id)

    def _record(self, engagement: Engagement, event: dict[str, Any] | None,
                now: datetime) -> Outcome:
        """The engagement and its event in one transaction, unless `limit` like it (kind,
        message, link, person or scanner) were recorded within `window`: then neither
        (a replayed link writes no rows; the redirect is answered all the same)."""
        with self.store.transaction(stamped=True):  # an engagement and an inbox row
            if not self.store.record_engagement(engagement, self.limit, now - self.window):
                return Outcome(None, queued=False, limited=True)
            queued = bool(self.store.accept_events([event], "tracking")) if event else False
        return Outcome(engagement, queued)


def _engagement(kind: str, record: OutboxRecord, at: datetime, **extra: Any) -> Engagement:
    entry = record.entry
    return Engagement(kind, entry.key, entry.profile_id, entry.journey, entry.step, at, **extra)


__all__ = ["CLICKED", "DEFAULT_SCANNER_WINDOW", "OPENED", "PIXEL", "RECORD_LIMIT",
           "RECORD_WINDOW", "Outcome", "Recorder",
           "TrackingLinks", "rewrite", "scanner_reason", "tracked_parts"]
