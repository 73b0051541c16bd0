"""`SqlStore`'s dashboard users (only scrypt's salted hash of a password is stored)."""

from __future__ import annotations

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from engine.ports import UserInfo
from engine.store.errors import DuplicateUserName
from engine.store.sql.db import SqlBase
from engine.store.sql.tables import table


class UserQueries(SqlBase):
    def create_user(self, name: str, password_hash: str, role: str) -> None:
        users = table("users")
        try:
            with self._write() as conn:
                if conn.execute(select(users.c.name).where(users.c.name == name)).first():
                    raise DuplicateUserName(f"a user named {name!r} exists")
                conn.execute(insert(users).values(name=name, password_hash=password_hash,
                                                  role=role, created_at=self._now()))
        except IntegrityError:  # created by another process between the check and now
            raise DuplicateUserName(f"a user named {name!r} exists") from None

    def get_user(self, name: str) -> UserInfo | None:
        users = table("users")
        with self._read() as conn:
            row = conn.execute(select(users).where(users.c.name == name)).first()
        if row is None:
            return None
        return UserInfo(row.name, row.role, row.password_hash, row.created_at)

    def list_users(self) -> list[UserInfo]:
        users = table("users")
        with self._read() as conn:
            rows = conn.execute(select(users).order_by(users.c.name)).all()
        return [UserInfo(r.name, r.role, r.password_hash, r.created_at) for r in rows]
