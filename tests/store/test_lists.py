"""`among` (engine/store/sql/lists.py): a list of values in one parameter. On PostgreSQL
the profiles' read sends one statement text whatever the list's length (so psycopg
prepares it and SQLAlchemy does not render it per call); on both backends the reads find
exactly the rows asked for: one id, many, none, and never the row of a shorter id that a
longer one starts with (PostgreSQL truncates a value cast to VARCHAR(255))."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import String, event, select
from sqlalchemy.dialects import postgresql, sqlite

from engine.core.model import Profile
from engine.store import SqlStore
from engine.store.sql.lists import among, array_literal, one_of
from engine.store.sql.tables import table


def _profiles(store: SqlStore, n: int) -> list[str]:
    ids = [f"p{i:03d}" for i in range(n)]
    for pid in ids:
        store.put_profile(Profile(pid, {"plan": "pro"}))
    return ids


@contextmanager
def _statements(store: SqlStore, parameters: list[Any] | None = None) -> Iterator[list[str]]:
    """The statements the store runs meanwhile (and their parameters, into `parameters`)."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, sent: Any, *_: Any) -> None:
        seen.append(statement)
        if parameters is not None:
            parameters.append(sent)

    event.listen(store.sql_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(store.sql_engine, "before_cursor_execute", record)


def test_the_reads_find_what_was_asked_for(sql_store: SqlStore) -> None:
    ids = _profiles(sql_store, 12)
    assert set(sql_store.load_profiles(ids[:1])) == {ids[0]}
    assert set(sql_store.load_profiles(ids[3:9])) == set(ids[3:9])
    assert sql_store.load_profiles([]) == {}
    assert set(sql_store.load_profiles(tuple(ids[:2]))) == set(ids[:2])
    assert set(sql_store.load_states([*ids[:3], "nobody"])) == {*ids[:3], "nobody"}
    assert sql_store.load_states(["nobody"])["nobody"].profile is None


def test_a_longer_id_never_finds_the_row_of_its_first_255_characters(
        sql_store: SqlStore) -> None:
    """An `anonymousId` or `previousId` of an event is looked up as it came (no length
    check on the way): cast to the column's VARCHAR(255)[], PostgreSQL cut it to 255
    characters and found another person's identity."""
    long_id = "v" * 255
    sql_store.put_profile(Profile(long_id, {"plan": "pro"}))
    sql_store.link_identity("anonymous_id", long_id, long_id)
    longer = long_id + "-attacker"
    assert sql_store.load_profiles([longer]) == {}
    assert sql_store.load_identities([("anonymous_id", longer)]) == {}
    assert sql_store.load_states([longer])[longer].profile is None
    assert sql_store.load_identities([("anonymous_id", long_id)]) == {
        ("anonymous_id", long_id): long_id}


@pytest.mark.postgres
def test_postgresql_sends_one_text_for_any_length(sql_store: SqlStore) -> None:
    if sql_store.dialect != "postgresql":
        pytest.skip("SQLite: a list is one JSON array (driver.py DriverQuery)")
    ids = _profiles(sql_store, 30)
    with _statements(sql_store) as seen:
        for n in (1, 2, 7, 30):
            sql_store.load_profiles(ids[:n])
    assert len(seen) == 4
    assert len(set(seen)) == 1, seen
    assert "= ANY (" in seen[0]
    assert "IN (" not in seen[0]


def test_among_renders_in_on_sqlite_and_any_on_postgresql() -> None:
    t = table("profiles")
    pg = str(select(t.c.id).where(among(t.c.id, "ids", pg=True)).compile(
        dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]
    lite = str(select(t.c.id).where(among(t.c.id, "ids", pg=False)).compile(
        dialect=sqlite.dialect()))
    # one text parameter, parsed by the server into an array without a length (no
    # truncation): psycopg's own list dumping cost ~1 us an element
    assert "profiles.id = ANY (%(ids)s::VARCHAR[])" in pg
    assert "profiles.id IN (__[POSTCOMPILE_ids])" in lite


HOSTILE_IDS = ['a"b', "back\\slash", 'both\\"', "com,ma", "{brace}", "NULL", "", " spaced ",
               "ünï 🎉", '","', '"}', "\\"]


def test_array_literal_quotes_and_escapes_every_element() -> None:
    assert array_literal([]) == "{}"
    assert array_literal(["a", "b"]) == '{"a","b"}'
    assert array_literal(iter([1, 22])) == '{"1","22"}'
    assert array_literal(['a"b', "c\\d"]) == '{"a\\"b","c\\\\d"}'
    assert array_literal(["a", None]) == '{"a",NULL}'  # as psycopg wrote it: matches nothing
    with pytest.raises(TypeError, match="not one string"):
        array_literal("abc")


def test_a_string_list_and_an_integer_list_are_two_statements() -> None:
    """The array's element type is part of SQLAlchemy's cache key: a statement of
    `::BIGINT[]` never reuses the text compiled for `::VARCHAR[]` (the type's own
    arguments are not in the key unless it keeps them: `_ArrayLiteral.element`)."""
    from sqlalchemy import any_, bindparam, literal_column
    from sqlalchemy.types import BigInteger

    from engine.store.sql.lists import _ArrayLiteral

    def where_in(element: Any) -> Any:
        return select(literal_column("1")).where(literal_column("x") == any_(
            bindparam("ids", type_=_ArrayLiteral(element))))

    pg = postgresql.dialect()  # type: ignore[no-untyped-call]
    assert "::VARCHAR[]" in str(where_in(String()).compile(dialect=pg))
    assert "::BIGINT[]" in str(where_in(BigInteger()).compile(dialect=pg))
    assert where_in(String())._generate_cache_key() != where_in(BigInteger())._generate_cache_key()


def test_hostile_ids_find_exactly_their_own_rows(sql_store: SqlStore) -> None:
    """Quotes, backslashes, commas, braces, the word NULL, an empty id: each finds its
    own row and no other, on both backends (on PostgreSQL through `array_literal`)."""
    for pid in HOSTILE_IDS:
        sql_store.put_profile(Profile(pid, {"plan": "pro"}))
    sql_store.put_profile(Profile("a", {"plan": "bystander"}))
    assert set(sql_store.load_profiles(HOSTILE_IDS)) == set(HOSTILE_IDS)
    for pid in HOSTILE_IDS:
        assert set(sql_store.load_profiles([pid, "nobody"])) == {pid}, pid
    assert set(sql_store.load_profiles(['a"', "b"])) == set()


def test_one_of_writes_plain_words_into_the_statement_and_nothing_else() -> None:
    t = table("inbox")
    one = str(select(t.c.id).where(one_of(t.c.status, ["parked"])).compile(
        dialect=sqlite.dialect()))
    two = str(select(t.c.id).where(one_of(t.c.status, ("pending", "parked"))).compile(
        dialect=sqlite.dialect()))
    assert "inbox.status = 'parked'" in one
    assert "inbox.status IN ('pending', 'parked')" in two
    with pytest.raises(ValueError, match="plain word"):
        one_of(t.c.status, ["x' OR '1'='1"])
    with pytest.raises(TypeError):
        one_of(t.c.status, "active")
    with pytest.raises(ValueError, match="at least one"):
        one_of(t.c.status, [])


@pytest.mark.postgres
def test_postgresql_gets_the_list_as_one_array_literal_and_plans_it_on_the_index(
        sql_store: SqlStore) -> None:
    """The list goes as one text, written by `array_literal` (psycopg dumps a list
    element by element in Python, ~1 us each), into the same statement text as before:
    `= ANY (%(ids)s::VARCHAR[])` makes the parameter itself the array, so a generic plan
    (psycopg prepares a statement at its fifth run), before any statistics, reads the
    index. (A `CAST(%(ids)s::VARCHAR AS VARCHAR[])` around a text parameter, tried
    first, doubled PostgreSQL's time in bench/journey_bench.py.)"""
    if sql_store.dialect != "postgresql":
        pytest.skip("SQLite runs `IN (?, ...)`")
    from sqlalchemy import text

    ids = _profiles(sql_store, 5)
    with sql_store.sql_engine.begin() as conn:  # enough rows that reading all costs more
        conn.execute(text(
            "INSERT INTO profiles (id, traits, computed, created_at, updated_at) "
            "SELECT 'bulk' || i, '{}', '{}', now(), now() FROM generate_series(1, 20000) i"))
    sent: list[Any] = []
    with _statements(sql_store, sent) as seen:
        assert set(sql_store.load_profiles(ids[:3])) == set(ids[:3])
    [statement] = seen
    assert "= ANY (%(ids)s::VARCHAR[])" in statement
    assert sent == [{"ids": array_literal(ids[:3])}]
    with sql_store.sql_engine.connect() as conn:
        conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        conn.exec_driver_sql("PREPARE profiles_of AS " + statement.replace("%(ids)s", "$1"))
        # the literal as the driver sends it: text of no declared type
        argument = "'" + array_literal(ids[3:5]) + "'"
        plan = "\n".join(r[0] for r in conn.exec_driver_sql(
            f"EXPLAIN EXECUTE profiles_of({argument})"))
        found = conn.exec_driver_sql(f"EXECUTE profiles_of({argument})").all()
    assert "Index" in plan, plan
    assert "Seq Scan" not in plan, plan
    assert sorted(r[0] for r in found) == ids[3:5]
