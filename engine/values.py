"""The values that cross the ports (engine/ports.py re-exports every one): the `Message`
a channel delivers and the `DeliveryError` it raises, outbox rows (`OutboxEntry`,
`OutboxRecord`), decisions, inbox items, keys and their scopes, users, the unit of
work's `WriteRun`, failures, engagements and suppressions, deployed journey versions.
Plain data, no behaviour beyond small helpers."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.core.frozen import quick_init
from engine.core.model import Enrollment, EntryStats, Exit, Profile, RecordGoal, ScheduleTimer
from engine.core.times import iso
from journeys.templating import Rendered
from rules.errors import JourneymanError


class DeliveryError(JourneymanError):
    """A channel could not deliver. `permanent` failures are not retried (a 5xx SMTP
    reply, a 4xx HTTP answer other than 408/429, no address); any other exception a
    channel raises is taken as transient and retried with backoff by the dispatcher
    (engine/runtime/dispatch.py). `bounce` marks a permanent refusal by the receiving
    server (a 5xx SMTP reply): a hard bounce, which suppresses the address. `detail`:
    what the provider said besides (an HTTP answer's body), which may echo a person's
    data: kept with the send (its last error, its decision), never logged. `recipient`:
    a transient failure of this message's recipient (its `to`), not of the channel: a
    greylisted or full mailbox (a 4xx to RCPT), a webhook's own URL (`allow_to_override`)
    that is down; the dispatcher holds the claim's later sends to that recipient only,
    and the channel's other sends go on."""

    def __init__(self, message: str, *, permanent: bool = False, bounce: bool = False,
                 detail: str = "", recipient: bool = False) -> None:
        super().__init__(message)
        self.permanent, self.bounce, self.detail = permanent, bounce, detail
        self.recipient = recipient


@quick_init
@dataclass(frozen=True, slots=True)
class Message:
    """A rendered message on its way to a channel adapter; `at` is the delivery time."""

    key: str  # idempotency key: (enrollment, step, occurrence)
    profile_id: str
    journey: str
    step: str
    channel: str
    to: str | None
    rendered: Rendered
    at: datetime


@quick_init
@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A rendered send waiting in the outbox. `key` is unique: enqueueing it twice is a no-op."""

    key: str
    enrollment_id: str
    profile_id: str
    journey: str
    step: str
    channel: str
    to: str | None
    rendered: Rendered
    created_at: datetime
    attempts: int = 0  # delivery attempts so far, this one included once claimed
    admitted_at: datetime | None = None  # when the policy let it go (counted for caps)

    def message(self, at: datetime | None = None) -> Message:
        """The message to deliver `at` (the delivery time; default: when it was queued)."""
        return Message(self.key, self.profile_id, self.journey, self.step, self.channel,
                       self.to, self.rendered, at or self.created_at)


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """An outbox row as an operator sees it: the entry, its status and its history."""

    entry: OutboxEntry
    status: str  # pending | sent | failed | skipped
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    sent_at: datetime | None

    @property
    def held(self) -> str | None:
        """Why its last claim held it untried (`channel_unavailable`, ...), else None;
        None once it is no longer pending (a send made after a hold keeps its
        `last_error`)."""
        return held_parts(self.last_error)[0] if self.status == "pending" else None

    @property
    def error(self) -> str | None:
        """`last_error` less a hold's reason: its earlier error, if any (a hold's words
        alone are no error)."""
        held, error = held_parts(self.last_error)
        return error if held is not None else self.last_error


# Why a send waits untried, no error of its own (Store.mark_deferred's reasons): the
# claim's holds after its channel or recipient failed (engine/runtime/holds.py), a
# process stopping (its claim released), the policy's deferrals.
CHANNEL_UNAVAILABLE = "channel_unavailable"
RECIPIENT_UNAVAILABLE = "recipient_unavailable"
RELEASED = "stopping"
HOLDS = (CHANNEL_UNAVAILABLE, RECIPIENT_UNAVAILABLE, RELEASED)
WAITS = (*HOLDS, "quiet_hours", "frequency_cap")
HELD_AFTER = "; last error: "


def held_error(reason: str, earlier: str | None) -> str:
    """The `last_error` of a send deferred for `reason`. A hold (HOLDS) keeps the row's
    earlier error after its reason, `channel_unavailable; last error: 451 4.7.1 ...`:
    the hold's word alone hid the provider's answer of its attempt before. An earlier
    hold's reason gives way to this one's (its error stays); a deferral's word is no
    error. The policy's deferrals write their reason alone."""
    if reason not in HOLDS or earlier is None or earlier in WAITS:
        return reason
    held, error = held_parts(earlier)
    return reason + HELD_AFTER + (earlier if held is None else error or "")


def held_parts(last_error: str | None) -> tuple[str | None, str | None]:
    """(the hold's reason, the earlier error) of a held send's `last_error`, else
    (None, None)."""
    if last_error is None:
        return None, None
    if last_error in HOLDS:
        return last_error, None
    reason, sep, error = last_error.partition(HELD_AFTER)
    return (reason, error) if sep and reason in HOLDS else (None, None)


@quick_init
@dataclass(frozen=True, slots=True)
class Decision:
    """One decision of the engine for a profile, and why (the decision log, `journeyman
    why`). `what` is its kind: entered, not_entered, waiting, resumed, branch, split,
    sent, skipped, deferred, failed, goal, exited (and fired_late, a timer's lateness;
    consent and not_merged, a person's own records, which `why` leaves out);
    `step` is "" when it was not made at a step; `details` holds the values that
    decided it."""

    at: datetime
    profile_id: str
    journey: str
    step: str
    what: str
    reason: str
    details: Mapping[str, Any] = field(default_factory=dict)


@quick_init
@dataclass(frozen=True, slots=True)
class InboxItem:
    """An accepted event leased to a worker: handle it, then ack it in the same unit."""

    id: int
    profile_id: str
    event: dict[str, Any]
    attempts: int


@dataclass(frozen=True, slots=True)
class Lane:
    """Which share of the inbox a SQLite worker handles: the profiles whose lane number
    (a hash of the inbox row's profile id, engine/store/sql/lanes.py) is `index` of
    `count`. One worker per lane; `Lane(0, 1)` is the whole inbox."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"lane {self.index} of {self.count}: expected 0 <= lane < count")

    @classmethod
    def parse(cls, text: str) -> Lane:
        """`K/N`: lane K (from 0) of N."""
        index, sep, count = text.partition("/")
        if not sep or not index.strip().isdigit() or not count.strip().isdigit():
            raise ValueError(f"expected K/N (lane K of N, from 0), got {text!r}")
        return cls(int(index), int(count))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass
class Snapshot:
    """What one optimistic batch read (engine/store/sql/stamps.py): the keys of state
    its reads noted and, once read in the same snapshot, their slots' stamps."""

    keys: set[str] = field(default_factory=set)
    read: dict[int, int] | None = None


# The identifier kinds whose value is or was a profile's own id: a profile is made from a
# userId or an anonymousId and takes its text, or gets an id the engine chose; a chosen
# id and the id of a profile merged into another are `profile` identifiers pointing at
# the person's profile (engine/runtime/identity.py). A person's rows are filed under
# their profile's id and the values of its `profile` identifiers.
PROFILE_ID_KIND = "profile"
PROFILE_ID_KINDS = ("user_id", "anonymous_id", PROFILE_ID_KIND)


# The ids the engine chooses for a profile end so (engine/runtime/identity.py): only such
# a profile has no userId or anonymousId of its own id's text.
CHOSEN_ID = re.compile(r"~[0-9]+\Z")


def is_chosen_id(profile_id: str) -> bool:
    """Whether `profile_id` may be one the engine chose."""
    return "~" in profile_id and CHOSEN_ID.search(profile_id) is not None


def id_taken(text: str, profile_for: Callable[[str, str], str | None]) -> bool:
    """Whether `text` is or was a profile's id, so that a new profile must not take it:
    a userId or anonymousId of that text names a profile (its own, or the one it merged
    into), or it is a `profile` identifier (an id chosen, or merged away: one whose
    userId or anonymousId went since, re-pointed and then erased, still names its rows).
    engine/runtime/identity.py chooses another id then."""
    return any(profile_for(kind, text) is not None for kind in PROFILE_ID_KINDS)


def inbox_owner(event: Mapping[str, Any],
                profile_for: Callable[[str, str], str | None]) -> str:
    """The inbox queue an accepted event waits in, and what its stored row is filed
    under until a worker handles it (then under the profile it was handled for): the
    profile its userId (else its anonymousId) points at; for an id not linked yet, one
    of its kind alone (a new userId and anonymousId of one text are two people): a userId's
    text, which the worker makes its profile's id, unless it is or was another's (identity.py
    chooses then); an anonymousId's, and such a userId's, a provisional queue, nobody's."""
    user, anonymous = event.get("userId"), event.get("anonymousId")
    for kind, value in (("user_id", user), ("anonymous_id", anonymous)):
        if not value:
            continue
        text = str(value)
        linked = profile_for(kind, text)
        if linked is not None:
            return linked
        if kind == "anonymous_id" or id_taken(text, profile_for):
            return provisional_owner(kind, text)
        return text
    return f"message:{event['messageId']}"


def provisional_owner(kind: str, value: str) -> str:
    """A provisional queue: no profile's id, as no id starts with a space (ids are
    stripped); a long id's by its hash (within the id columns, one queue per id)."""
    owner = f" {kind}:{value}"
    if len(owner) <= 200:
        return owner
    return f" {kind}#{hashlib.sha256(value.encode()).hexdigest()}"


def is_provisional(owner: str) -> bool:
    return owner.startswith(" ")


def waiting_ids(events: Iterable[Any]) -> list[str]:
    """The ids the events waiting in the inbox name (forget's scrub leaves them: they are
    someone's, whose event is not handled yet)."""
    return [str(event[field]) for event in events if isinstance(event, Mapping)
            for field in ("userId", "anonymousId", "previousId") if event.get(field)]


def named_ids(ids: Iterable[str]) -> list[str]:
    """`ids` without the provisional queues (no one's identifier, nothing to show)."""
    return [i for i in ids if not is_provisional(i)]


def person_ids_from(profile_id: str, identities: Iterable[tuple[str, str]]) -> list[str]:
    """What a person's rows are filed under, from their profile's identifiers: its id,
    the ids it had (`profile` identifiers) and the provisional queues of its userIds and
    anonymousIds (an event parked there, not handled yet, is theirs)."""
    ids = {profile_id}
    for kind, value in identities:
        if kind == PROFILE_ID_KIND:
            ids.add(value)
        elif kind in PROFILE_ID_KINDS:
            ids.add(provisional_owner(kind, value))
    return sorted(ids)


# What a key may do (docs/privacy.md, "Keys and scopes"): `track` (track, page, screen,
# group), `identify`, `alias` (alias calls, and e-mail/phone traits: identifiers that can
# join profiles), `consent` (set `consent.*` traits), `admin` (read, export and erase
# profiles). A server key has every scope but admin; a public key, safe to ship in a web
# page or an app, has track and identify only.
SCOPES = ("track", "identify", "alias", "consent", "admin")
SERVER_SCOPES = frozenset({"track", "identify", "alias", "consent"})
PUBLIC_SCOPES = frozenset({"track", "identify"})
ADMIN_SCOPES = frozenset(SCOPES)
# Events per second a key may send (a batch counts each event): its own `rate`, else
# this by kind. Public keys get less: they ship in pages anyone can read.
DEFAULT_RATE, PUBLIC_RATE = 2000, 50


def key_scopes(admin: bool, scopes: Collection[str] | None) -> frozenset[str]:
    """The scopes of a key: as given (with `admin` when `admin`), else by kind."""
    if scopes is None:
        return ADMIN_SCOPES if admin else SERVER_SCOPES
    unknown = set(scopes) - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(sorted(unknown))}; "
                         f"scopes are {', '.join(SCOPES)}")
    return frozenset(scopes) | ({"admin"} if admin else set())


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """An API key as the store knows it (the key itself is never stored)."""

    name: str
    admin: bool = False
    prefix: str = ""
    created_at: datetime | None = None
    revoked_at: datetime | None = None
    scopes: frozenset[str] = SERVER_SCOPES
    rate: int | None = None  # events per second; None: DEFAULT_RATE or PUBLIC_RATE

    @property
    def public(self) -> bool:
        return not self.scopes & {"alias", "consent", "admin"}

    @property
    def events_per_second(self) -> int:
        if self.rate is not None:
            return self.rate
        return PUBLIC_RATE if self.public else DEFAULT_RATE


@dataclass(frozen=True, slots=True)
class UserInfo:
    """A dashboard user. `password_hash` is scrypt's, salted (engine/api/dashboard/auth.py);
    the password itself is never stored. `role` is viewer or editor."""

    name: str
    role: str
    password_hash: str
    created_at: datetime | None = None


@dataclass(slots=True)
class ProfileState:
    """What the runtime reads to handle a profile's events and timers; bounded by the
    number of journeys, never by the profile's history."""

    profile: Profile | None = None
    active: dict[str, Enrollment] = field(default_factory=dict)  # journey -> active one
    entries: dict[str, EntryStats] = field(default_factory=dict)  # journey -> its stats
    segments: set[str] = field(default_factory=set)  # journeys whose segment holds it

    def copy(self) -> ProfileState:
        return ProfileState(self.profile, dict(self.active), dict(self.entries),
                            set(self.segments))


@dataclass
class WriteRun:
    """Buffered writes of a unit of work, applied in bulk: the last write of a row wins,
    records are appended, timer cancels apply before timer adds (so cancel-then-add
    leaves the new timer, add-then-cancel leaves none)."""

    profiles: dict[str, Profile] = field(default_factory=dict)
    enrollments: dict[str, Enrollment] = field(default_factory=dict)
    entries: dict[tuple[str, str], EntryStats] = field(default_factory=dict)
    timers_added: dict[str, ScheduleTimer] = field(default_factory=dict)
    timers_cancelled: set[str] = field(default_factory=set)
    segments: dict[tuple[str, str], bool] = field(default_factory=dict)
    identities: dict[tuple[str, str], str] = field(default_factory=dict)
    sends: list[OutboxEntry] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    exits: list[Exit] = field(default_factory=list)
    goals: list[RecordGoal] = field(default_factory=list)
    acked: list[int] = field(default_factory=list)  # inbox rows handled
    emitted: list[dict[str, Any]] = field(default_factory=list)  # events for the inbox
    # Held sends no longer wanted: (profile, enrollment, decision template); each pending
    # outbox row of the enrollment is skipped and gets a decision like the template.
    withdrawn: list[tuple[str, str, Decision]] = field(default_factory=list)
    # Events handled for another profile than the inbox queued them for (identity
    # resolution chose another id, or merged): (messageId, queued for, handled for); the
    # stored event is filed under the profile it was handled for.
    refiled: list[tuple[str, str, str]] = field(default_factory=list)
    # Provisional queues resolved (engine/values.py `inbox_owner`): queue -> profile; the
    # events still waiting there wait in the profile's queue (also: a text a new visitor
    # took -> the provisional queue of a new userId's events under it, identity.py).
    requeued: dict[str, str] = field(default_factory=dict)

    def add_timer(self, timer: ScheduleTimer) -> None:
        self.timers_added.setdefault(timer.key, timer)

    def cancel_timer(self, key: str) -> None:
        self.timers_added.pop(key, None)
        self.timers_cancelled.add(key)

    def absorb(self, later: WriteRun) -> None:
        """Fold the writes made after this run's into it, as if made here, in order."""
        self.profiles.update(later.profiles)
        self.enrollments.update(later.enrollments)
        self.entries.update(later.entries)
        for key in later.timers_cancelled:
            self.cancel_timer(key)
        for timer in later.timers_added.values():
            self.add_timer(timer)
        self.segments.update(later.segments)
        self.identities.update(later.identities)
        self.sends += later.sends
        self.decisions += later.decisions
        self.exits += later.exits
        self.goals += later.goals
        self.acked += later.acked
        self.emitted += later.emitted
        self.withdrawn += later.withdrawn
        self.refiled += later.refiled
        self.requeued.update(later.requeued)

    @property
    def empty(self) -> bool:
        return not any((self.profiles, self.enrollments, self.entries, self.timers_added,
                        self.timers_cancelled, self.segments, self.identities, self.sends,
                        self.decisions, self.exits, self.goals, self.acked, self.emitted,
                        self.withdrawn, self.refiled, self.requeued))


@dataclass(frozen=True, slots=True)
class MergeStep:
    """Fold profile `from_` into `into` (engine/core/merge.py), between two write runs."""

    into: str
    from_: str
    at: datetime


Change = WriteRun | MergeStep


@dataclass(frozen=True, slots=True)
class Levels:
    """How full the queues are and how many people are in each journey (metrics)."""

    inbox: Mapping[str, int]  # status -> events
    timers_pending: int
    timers_overdue: int  # due more than a minute ago
    outbox: Mapping[str, int]  # status -> rows
    enrollments: Mapping[tuple[str, str], int]  # (journey, status) -> enrollments
    sends: Mapping[tuple[str, str], int]  # (journey, status) -> outbox rows


@dataclass(frozen=True, slots=True)
class Failure:
    """A parked item: it failed `attempts` times and waits for an operator
    (`journeyman failures`). `kind` is event, timer or send; `ref` is its inbox id, timer
    key or send key."""

    id: int
    kind: str
    ref: str
    profile_id: str
    journey: str
    step: str
    error: str
    stack: str
    attempts: int
    parked_at: datetime
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Engagement:
    """What happened to a delivered message (engine/runtime/tracking.py): `kind` is
    click, open, unsubscribe, bounce (hard), soft_bounce or complaint. `human` is False
    for a click the scanner rule filtered (it is counted, never acted on); `position`
    is the link's 1-based place in the message."""

    kind: str
    message_key: str
    profile_id: str
    journey: str
    step: str
    at: datetime
    url: str | None = None
    position: int | None = None
    human: bool = True
    reason: str | None = None


# A suppression's `reason`: what put the address on the list (the column holds 32
# characters: a kind, not a report; a report goes in `details`)
SUPPRESSION_REASONS = ("hard_bounce", "complaint", "manual", "unsubscribed")
REASON_LENGTH = 32


@dataclass(frozen=True, slots=True)
class Suppression:
    """An address no journey sends to any more: `reason` is hard_bounce, complaint,
    manual or unsubscribed (SUPPRESSION_REASONS, or a short word given by hand); `address`
    is kept lowercased; `details` holds the rest (a bounce's report, a note)."""

    address: str
    reason: str
    at: datetime
    source: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)


FORGOTTEN = "[forgotten]"  # forget's word for an identifier it erased (engine/store/scrub.py)


def forgotten_address(address: str) -> str:
    """A forgotten person's suppressed address as kept: its SHA-256, still keeping journeys
    from sending to it if it comes back, the address in no file (docs/privacy.md)."""
    return "sha256:" + hashlib.sha256(address.strip().lower().encode()).hexdigest()


# The traits that hold a person's addresses and identify them: they can join profiles
# (the alias scope, engine/api/quota.py), forget erases them wherever they stand.
IDENTIFIER_TRAITS = ("email", "phone")


def addresses_in(events: Iterable[Any]) -> set[str]:
    """The e-mail and phone traits that `events` set (an identify's `traits`, any
    event's `context.traits`): every address a person gave, an earlier one they have
    changed since as much as the one their profile holds now (export lists its
    suppression, forget keeps that as its hash only: docs/privacy.md)."""
    found: set[str] = set()
    for event in events:
        if not isinstance(event, Mapping):
            continue
        context = event.get("context")
        for traits in (event.get("traits"),
                       context.get("traits") if isinstance(context, Mapping) else None):
            if isinstance(traits, Mapping):
                found |= {str(value) for t in IDENTIFIER_TRAITS
                          if isinstance(value := traits.get(t), str | int)
                          and not isinstance(value, bool) and str(value).strip()}
    return found


def forgotten_reason(reason: str) -> str:
    """What the suppression of a forgotten person's address keeps as its reason: the
    kind (SUPPRESSION_REASONS) as it was, any other text (given by hand, it may name the
    person) as "forgotten"."""
    return reason if reason in SUPPRESSION_REASONS else "forgotten"


@dataclass(frozen=True, slots=True)
class DeployedVersion:
    """One deployed version of a journey (`journeyman apply`): its file as written and
    the digest of its content. `status` is the journey's: active, paused (no new
    entries) or archived (no new entries, not in the journeys folder any more); every
    version of a journey has the same one."""

    journey: str
    version: int
    digest: str
    source: str  # the journey file's text
    file: str  # where it was deployed from, for messages
    deployed_at: datetime
    status: str = "active"


@dataclass(frozen=True, slots=True)
class StepMove:
    """Move a version's active enrollments on one step to a step of a newer version
    (`migrate:` in a journey file); their timers keep their due time, and each move is
    recorded in the decision log (`decision`)."""

    journey: str
    from_version: int
    from_step: str
    to_version: int
    to_step: str

    def decision(self, at: datetime, profile_id: str, enrollment_id: str,
                 due: datetime | None) -> Decision:
        """What the decision log keeps of one enrollment moved (`why` tells it): a
        `waiting` at the new step that says where from, with the moved timer's due time
        (`until`, when it had one). The reason names no person (the journey page counts
        the moves of a step in one row, engine/store/sql/reasons.py)."""
        details: dict[str, Any] = {
            "moved_by": "apply", "from_version": self.from_version,
            "to_version": self.to_version, "from_step": self.from_step,
            "to_step": self.to_step, "enrollment": enrollment_id}
        if due is not None:
            details["until"] = iso(due)
        return Decision(at, profile_id, self.journey, self.to_step, "waiting",
                        f"moved by apply: {self.journey} v{self.from_version} step "
                        f"{self.from_step} -> v{self.to_version} step {self.to_step}", details)
