"""The ids a person's profile had are `profile` identifiers (engine/runtime/identity.py):
the ones of profiles merged into theirs, written here for the merges made before.

Until now a person's rows were looked for under the values of every identifier of
their profile, on the rule that a profile's id is the userId or anonymousId it was made
from. That rule failed twice: an identifier re-pointed to another person (the family
laptop's device id, which moves to the newest known user) took the first person's rows
filed under it along, and an e-mail identifier whose text is another person's userId
named that person's rows. Now a merge links the merged-away id as a `profile`
identifier of the profile merged into, and exports, erasure and `why` read those alone.

For the merges made before, the best that can be known: every userId or anonymousId
that points at another profile than its own text, unless that text is still a live
profile's own id. (A device id already re-pointed is written for the person it points
at now, as the old rule read it.)

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""
        INSERT INTO identities (kind, value, profile_id, created_at)
        SELECT 'profile', i.value, MIN(i.profile_id), MIN(i.created_at)
        FROM identities i
        WHERE i.kind IN ('user_id', 'anonymous_id') AND i.value <> i.profile_id
          AND NOT EXISTS (SELECT 1 FROM identities o
                          WHERE o.kind IN ('user_id', 'anonymous_id', 'profile')
                            AND o.value = i.value AND o.profile_id = o.value)
        GROUP BY i.value
        ON CONFLICT DO NOTHING
    """)
    # A profile with no userId or anonymousId of its own id's text has an id the engine
    # chose: there are none before this revision, but after a downgrade and this
    # upgrade again (the downgrade drops every `profile` identifier) its id is marked
    # taken again, so no new profile can take it.
    op.execute("""
        INSERT INTO identities (kind, value, profile_id, created_at)
        SELECT 'profile', i.profile_id, i.profile_id, MIN(i.created_at)
        FROM identities i
        WHERE NOT EXISTS (SELECT 1 FROM identities o
                          WHERE o.kind IN ('user_id', 'anonymous_id', 'profile')
                            AND o.value = i.profile_id AND o.profile_id = i.profile_id)
        GROUP BY i.profile_id
        ON CONFLICT DO NOTHING
    """)


def downgrade() -> None:
    # Which ids profiles had is lost: the upgrade writes what it can find again.
    op.execute("DELETE FROM identities WHERE kind = 'profile'")
