"""`SqlStore`'s dashboard users (only scrypt's salted hash of a password is stored)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, or_, select
from sqlalchemy.exc import IntegrityError

from engine.ports import UserInfo
from engine.store.errors import DuplicateUserName
from engine.store.sql.db import SqlBase
from engine.store.sql.tables import table

_DAY = timedelta(days=1)


class UserQueries(SqlBase):
    def create_user(self, name: str, password_hash: str, role: str) -> None:
        users = table("users")
        try:
            with self._write(stamped=True) as conn:  # users, no profile's state
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

    # --- the login lockout (engine/api/dashboard/auth.py) ------------------------------

    def record_login_failure(self, name: str, ip: str, at: datetime) -> None:
        """A failed login for `name` from `ip`; failures older than a day go at once."""
        failures = table("login_failures")
        with self._write(stamped=True) as conn:  # users, no profile's state
            conn.execute(insert(failures).values(name=name[:255], ip=ip[:64], at=at))
            conn.execute(delete(failures).where(failures.c.at < at - _DAY))

    def login_failures(self, name: str, ip: str, since: datetime) -> tuple[int, int,
                                                                           datetime | None]:
        """Failed logins since `since`: (for this name, from this address, the oldest of
        either: when the lock starts to lift)."""
        failures = table("login_failures")
        with self._read() as conn:
            by_name, by_ip, oldest = conn.execute(select(
                func.count().filter(failures.c.name == name),
                func.count().filter(failures.c.ip == ip),
                func.min(failures.c.at)).where(
                    or_(failures.c.name == name, failures.c.ip == ip),
                    failures.c.at >= since)).one()
        return int(by_name or 0), int(by_ip or 0), oldest

    def clear_login_failures(self, name: str) -> None:
        """A successful login forgives the name's failures (not its address's)."""
        failures = table("login_failures")
        with self._write(stamped=True) as conn:  # users, no profile's state
            conn.execute(delete(failures).where(failures.c.name == name))
