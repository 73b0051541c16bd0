"""`SqlStore`'s API keys (only a key's sha256 is stored) and its settings."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Collection

from sqlalchemy import delete, insert, select, update

from engine.ports import KeyInfo, key_scopes
from engine.store.errors import DuplicateKeyName
from engine.store.sql.db import SqlBase
from engine.store.sql.rows import key_info


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyQueries(SqlBase):
    def setting(self, key: str) -> str | None:
        """A value the store keeps for the runtime (e.g. a sealed secret), or None."""
        st = self._settings
        with self._read() as conn:
            value = conn.execute(select(st.c.value).where(st.c.key == key)).scalar()
        return None if value is None else str(value)

    def put_setting(self, key: str, value: str | None) -> None:
        """Keep `value` under `key` (replacing any), or forget `key` when value is None."""
        st = self._settings
        with self._write(stamped=True) as conn:  # settings are no profile's state
            conn.execute(delete(st).where(st.c.key == key))
            if value is not None:
                conn.execute(insert(st).values(key=key, value=value))

    def create_key(self, name: str, admin: bool = False, *,
                   scopes: Collection[str] | None = None, rate: int | None = None) -> str:
        """A new random key for `name`; only its sha256 is stored. Shown once."""
        granted = key_scopes(admin, scopes)
        admin = "admin" in granted
        k = self._api_keys
        key = "jm_" + secrets.token_urlsafe(32)
        with self._write() as conn:
            if conn.execute(select(k.c.id).where(k.c.name == name,
                                                 k.c.revoked_at.is_(None))).first():
                raise DuplicateKeyName(f"an active key named {name!r} exists; revoke it first")
            conn.execute(insert(k).values(name=name, key_hash=_key_hash(key), prefix=key[:10],
                                          admin=admin, created_at=self._now(),
                                          revoked_at=None, scopes=",".join(sorted(granted)),
                                          rate=rate))
        return key

    def check_key(self, key: str) -> KeyInfo | None:
        k = self._api_keys
        with self._read() as conn:
            row = conn.execute(select(k).where(k.c.key_hash == _key_hash(key),
                                               k.c.revoked_at.is_(None))).first()
        return None if row is None else key_info(row._mapping)

    def list_keys(self, *, include_revoked: bool = False) -> list[KeyInfo]:
        k = self._api_keys
        query = select(k).order_by(k.c.created_at, k.c.id)
        if not include_revoked:
            query = query.where(k.c.revoked_at.is_(None))
        with self._read() as conn:
            return [key_info(r._mapping) for r in conn.execute(query)]

    def revoke_key(self, name: str) -> bool:
        k = self._api_keys
        with self._write() as conn:
            result = conn.execute(update(k).where(k.c.name == name, k.c.revoked_at.is_(None))
                                  .values(revoked_at=self._now()))
            return bool(result.rowcount)
