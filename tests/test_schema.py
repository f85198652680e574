"""Schema revisions: a new store is made by the migrations and matches the models; a store made by the
release before migrations existed (tests/data/store-v1, made by scripts/make_store_fixture.py) is
upgraded and still finds its people, on SQLite and on PostgreSQL; a store from a newer faceledger is
refused; a store behind the code waits for `faceledger db upgrade` when automatic upgrades are off; two
processes opening one new store do not both create it."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, func, inspect, select, text

from faceledger import cli, migrations
from faceledger.errors import SchemaBehind, SchemaMismatch, SchemaTooNew
from faceledger.ledger import Ledger
from faceledger.store import Base, LedgerEntry, connect, open_store
from faceledger.store.schema import SchemaStatus, schema_status, upgrade

from . import store_v1_models as v1
from .conftest import LFW_DIR, open_test_engine

FIXTURE = Path(__file__).parent / "data" / "store-v1"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgresql"])
def new_url(request, tmp_path) -> str:
    """The URL of an empty database: a SQLite file that does not exist yet, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "new.db")
    return request.getfixturevalue("postgres").create_database()


def release_home(tmp_path: Path, name: str = "home") -> Path:
    """A copy of the data directory made by the release before migrations existed."""
    home = tmp_path / name
    shutil.copytree(FIXTURE, home)
    return home


def run_cli(capsys, monkeypatch, home: Path, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.argv", ["faceledger", "--home", str(home), *args])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- a new store --------------------------------------------------------------------------------------

def test_a_new_store_is_made_by_the_migrations_and_is_exactly_the_models(new_url):
    store = open_store(new_url)
    try:
        change = store.schema_change
        assert change.created and change.applied == ["0001", "0002", "0003", "0004", "0005"] and change.to_revision == migrations.head()
        assert schema_status(store.db).state == "current"
        with store.db.connect() as conn:
            assert conn.get_isolation_level() != "AUTOCOMMIT"  # the lock's connection went back to the pool as it was
            assert migrations.VERSION_TABLE in inspect(conn).get_table_names()  # the store records its revision
            context = MigrationContext.configure(conn, opts={
                "compare_type": True, "version_table": migrations.VERSION_TABLE})
            assert compare_metadata(context, Base.metadata) == []
        with store.db.begin() as conn:  # the comparison does see a difference
            conn.execute(text("DROP INDEX ix_ledger_actor"))
        with store.db.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": migrations.VERSION_TABLE})
            assert [diff[0] for diff in compare_metadata(context, Base.metadata)] == ["add_index"]
        assert open_store(new_url).schema_change is None  # opening it again changes nothing
    finally:
        store.db.dispose()


def test_on_sqlite_the_migrations_write_the_statements_the_release_wrote(tmp_path):
    store = open_store(sqlite_url(tmp_path / "new.db"))
    store.db.dispose()

    def ddl(path: Path) -> dict:
        with sqlite3.connect(path) as conn:
            return dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE name NOT LIKE ?",
                                     (migrations.VERSION_TABLE.replace("_", "%") + "%",)))

    made, released = ddl(tmp_path / "new.db"), ddl(FIXTURE / "faceledger.db")
    after_the_release = {"web_sessions", "sqlite_autoindex_web_sessions_1", "ix_web_sessions_user_id",
                         "ix_web_sessions_expires_at",  # revision 0002
                         "open_reviews", "sqlite_autoindex_open_reviews_1", "sqlite_autoindex_open_reviews_2",
                         "ix_open_reviews_created_at", "open_review_galleries", "sqlite_autoindex_open_review_galleries_1",
                         "ix_open_review_galleries_entry_id"}  # revision 0005
    assert set(made) - set(released) == {"sqlite_autoindex_faceledger_schema_version_1", *after_the_release}
    widened = {  # revision 0003 adds three policy columns, 0004 a probe's review crop and a review's blindness
        "galleries": {"allow_live": ("BOOLEAN", 1, "0", 0), "blind_review": ("BOOLEAN", 1, "0", 0),
                      "keep_probe_for_review": ("BOOLEAN", 1, "1", 0)},
        "probes": {"review_image": ("BLOB", 0, None, 0)},
        "reviews": {"blind": ("BOOLEAN", 1, "0", 0)}}
    assert {name: made[name] for name in released if name not in widened} == {
        name: sql for name, sql in released.items() if name not in widened}
    for table, expected in widened.items():
        with sqlite3.connect(tmp_path / "new.db") as new, sqlite3.connect(FIXTURE / "faceledger.db") as old:
            columns = [{row[1]: row[2:] for row in db.execute(f"PRAGMA table_info({table})")} for db in (new, old)]
        added = {name: spec for name, spec in columns[0].items() if name not in columns[1]}
        assert {name: spec for name, spec in columns[0].items() if name in columns[1]} == columns[1]
        assert added == expected, table


# -- the store of the release before migrations --------------------------------------------------------

def search_the_release_store(home: Path, db: str | None = None) -> None:
    """Open an engine on the release's store, which must upgrade it, then find the people enrolled in it."""
    url = db or sqlite_url(home / "faceledger.db")
    before = connect(url)
    assert schema_status(before).state == "unversioned"
    before.dispose()
    eng = open_test_engine(home, db=db)
    try:
        status = schema_status(eng.db)
        assert (status.state, status.current) == ("current", migrations.head())
        assert eng.audit_verify().ok
        assert eng.gallery_info("fixture")["subjects"] == 4
        for person in ("Angela_Merkel", "Colin_Powell"):
            result = eng.search(LFW_DIR / person / f"{person}_0004.jpg", gallery="fixture", purpose="identity check",
                                case="UPGRADE-1")
            assert result.decision == "match" and result.candidates[0].subject == person
        stranger = eng.search(LFW_DIR / "Shinzo_Abe" / "Shinzo_Abe_0001.jpg", gallery="fixture",
                              purpose="identity check", case="UPGRADE-2")
        assert stranger.decision == "no_match"
        assert eng.audit_verify().ok
    finally:
        eng.close()


def test_a_sqlite_store_of_the_release_is_upgraded_and_still_finds_its_people(tmp_path):
    search_the_release_store(release_home(tmp_path))


def test_a_postgres_store_of_the_release_is_upgraded_and_still_finds_its_people(postgres, tmp_path):
    url = postgres.create_database()
    target = create_engine(url)
    source = create_engine(sqlite_url(FIXTURE / "faceledger.db"))
    try:
        v1.Base.metadata.create_all(target)  # as the release made its stores: no version table
        with source.connect() as src, target.begin() as dst:
            for table in v1.Base.metadata.sorted_tables:
                rows = [dict(row) for row in src.execute(select(table)).mappings()]
                if rows:
                    dst.execute(table.insert(), rows)
                for column in table.primary_key.columns:
                    if column.type.python_type is int and not column.foreign_keys:
                        dst.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "
                                         f"COALESCE((SELECT MAX({column.name}) FROM {table.name}), 0) + 1, false)"))
        with target.connect() as conn:
            assert conn.execute(select(func.count()).select_from(v1.FaceRecord.__table__)).scalar_one() == 10
    finally:
        source.dispose()
        target.dispose()
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy2(FIXTURE / "ledger.head", home / "ledger.head")
    search_the_release_store(home, db=url)


def test_tables_without_a_revision_that_are_not_the_release_schema_are_refused_untouched(tmp_path):
    url = sqlite_url(tmp_path / "other.db")
    with sqlite3.connect(tmp_path / "other.db") as conn:
        conn.execute("CREATE TABLE galleries (id INTEGER PRIMARY KEY, name TEXT)")
    with pytest.raises(SchemaMismatch, match="table 'galleries': missing .*'created_at'"):
        open_store(url)
    with sqlite3.connect(tmp_path / "other.db") as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert names == {"galleries"}


# -- newer than the code, and behind it ----------------------------------------------------------------

def test_a_store_from_a_newer_faceledger_is_refused_with_what_to_do(tmp_path, capsys, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    url = sqlite_url(home / "faceledger.db")
    store = open_store(url)
    with store.db.begin() as conn:
        conn.execute(text(f"UPDATE {migrations.VERSION_TABLE} SET version_num = '7f3e9a_future'"))
    store.db.dispose()

    for auto_upgrade in (True, False):
        with pytest.raises(SchemaTooNew) as caught:  # never matched by prefix to a revision it knows
            open_store(url, auto_upgrade=auto_upgrade)
        message = str(caught.value)
        assert "'7f3e9a_future'" in message and f"'{migrations.head()}'" in message
        assert "newer faceledger" in message and "install" in message

    for command in (["db", "upgrade"], ["stats"]):
        code, out, err = run_cli(capsys, monkeypatch, home, *command)
        assert code == 2 and not out, command
        assert err.startswith("error: the store is at schema revision '7f3e9a_future'") and err.count("\n") == 1
        assert "Traceback" not in err
    code, out, _ = run_cli(capsys, monkeypatch, home, "db", "status", "--json")
    assert code == 0 and json.loads(out)["state"] == "ahead"
    with sqlite3.connect(home / "faceledger.db") as conn:  # nothing was downgraded or rewritten
        assert conn.execute(f"SELECT version_num FROM {migrations.VERSION_TABLE}").fetchall() == [("7f3e9a_future",)]
        conn.execute(f"UPDATE {migrations.VERSION_TABLE} SET version_num = '0'")  # a prefix of 0001 is not 0001
    with pytest.raises(SchemaTooNew, match="'0', which this faceledger does not know"):
        open_store(url)


REAL_HEAD = migrations.head()
TEST_REVISION = "9001"
SECOND_REVISION = f'''"""A test-only revision after the real head ({REAL_HEAD}): one more index."""
from alembic import op

revision = "{TEST_REVISION}"
down_revision = "{REAL_HEAD}"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_images_sha256", "images", ["sha256"])


def downgrade():
    op.drop_index("ix_images_sha256", table_name="images")
'''


def use_two_revisions(monkeypatch, tmp_path: Path) -> None:
    """From now on the code knows a revision 9001 after the real head (a copy of the migrations plus one file)."""
    copy = tmp_path / "migrations"
    shutil.copytree(migrations.HERE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "versions" / "9001_test_index.py").write_text(SECOND_REVISION)
    monkeypatch.setattr(migrations, "HERE", copy)
    assert migrations.head() == TEST_REVISION


def test_a_release_store_behind_every_later_revision_is_stamped_then_upgraded_on_open(tmp_path, monkeypatch):
    use_two_revisions(monkeypatch, tmp_path)
    url = sqlite_url(release_home(tmp_path, "off") / "faceledger.db")
    with pytest.raises(SchemaBehind, match=f"revision '0001' and this faceledger needs '{TEST_REVISION}'"):
        open_store(url, auto_upgrade=False)  # recorded as 0001 (what it is), not upgraded
    probe = connect(url)
    assert schema_status(probe) == SchemaStatus(current="0001", head=TEST_REVISION, state="behind")
    probe.dispose()

    store = open_store(sqlite_url(release_home(tmp_path, "on") / "faceledger.db"))
    try:
        change = store.schema_change
        assert (change.previous_state, change.stamped, change.applied) == ("unversioned", "0001", ["0002", "0003", "0004", "0005", TEST_REVISION])
        assert not change.created and change.as_payload()["to_revision"] == TEST_REVISION
        assert "ix_images_sha256" in {ix["name"] for ix in inspect(store.db).get_indexes("images")}
    finally:
        store.db.dispose()


def test_behind_with_auto_upgrade_off_waits_for_db_upgrade(tmp_path, monkeypatch, capsys):
    home = release_home(tmp_path)
    url = sqlite_url(home / "faceledger.db")
    open_store(url).db.dispose()  # stamped 0001 and upgraded to the real head by this code
    use_two_revisions(monkeypatch, tmp_path)

    with pytest.raises(SchemaBehind) as caught:
        open_store(url, auto_upgrade=False)
    assert f"'{REAL_HEAD}'" in str(caught.value) and f"'{TEST_REVISION}'" in str(caught.value)
    assert "faceledger db upgrade" in str(caught.value)
    code, out, _ = run_cli(capsys, monkeypatch, home, "db", "status", "--json")
    assert json.loads(out) | {"hint": None} == {"database": url, "current": REAL_HEAD, "head": TEST_REVISION,
                                                 "state": "behind", "hint": None}

    monkeypatch.setenv("FACELEDGER_OPERATOR", "db-admin")
    code, out, err = run_cli(capsys, monkeypatch, home, "db", "upgrade", "--json")
    assert code == 0, err
    body = json.loads(out)
    assert body["change"]["applied"] == [TEST_REVISION] and body["change"]["from_revision"] == REAL_HEAD
    store = open_store(url, auto_upgrade=False)
    try:
        assert store.schema_change is None and schema_status(store.db).current == TEST_REVISION
        with store.sessions() as session:
            last = session.execute(select(LedgerEntry).order_by(LedgerEntry.seq.desc()).limit(1)).scalar_one()
        assert (last.entry_id, last.action, last.actor) == (body["ledger_entry"], "schema.upgrade", "db-admin")
        assert json.loads(last.payload)["applied"] == [TEST_REVISION]
        assert Ledger(store.sessions, home / "ledger.head").verify().ok
        assert upgrade(store.db) == []  # nothing left to do
    finally:
        store.db.dispose()


def test_the_engine_refuses_a_store_behind_it_when_auto_upgrade_is_off(tmp_path, monkeypatch, capsys):
    home = release_home(tmp_path)
    open_store(sqlite_url(home / "faceledger.db")).db.dispose()
    use_two_revisions(monkeypatch, tmp_path)
    monkeypatch.setenv("FACELEDGER_AUTO_UPGRADE", "false")
    code, _, err = run_cli(capsys, monkeypatch, home, "stats")
    assert code == 2 and "run `faceledger db upgrade`" in err and "Traceback" not in err


def test_the_engine_ledgers_the_upgrade_it_makes_on_start(tmp_path, monkeypatch):
    home = release_home(tmp_path)
    use_two_revisions(monkeypatch, tmp_path)
    eng = open_test_engine(home)
    try:
        entries = eng.audit_entries(action="schema.upgrade")
        assert len(entries) == 1 and TEST_REVISION in json.dumps(entries[0])
        assert eng.audit_verify().ok
    finally:
        eng.close()


def test_db_commands_on_a_new_data_directory(tmp_path, capsys, monkeypatch):
    home = tmp_path / "home"
    code, out, _ = run_cli(capsys, monkeypatch, home, "db", "status", "--json")
    assert code == 0 and json.loads(out)["state"] == "empty" and not home.exists()  # status creates nothing
    code, out, _ = run_cli(capsys, monkeypatch, home, "db", "upgrade")
    assert code == 0 and f"new store created at schema {REAL_HEAD}" in out
    code, out, _ = run_cli(capsys, monkeypatch, home, "db", "status")
    assert code == 0 and "current" in out


# -- two processes, one new store ----------------------------------------------------------------------

def _open_in_child(url: str, barrier, results) -> None:
    try:
        barrier.wait(timeout=120)
        store = open_store(url)
        change = store.schema_change
        with store.db.connect() as conn:
            tables = len(inspect(conn).get_table_names())
        store.db.dispose()
        results.put(("ok", change.previous_state if change else None, tables))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the test with it
        results.put(("error", f"{type(exc).__name__}: {exc}", 0))


def test_two_processes_opening_one_new_store_create_it_once(new_url):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    workers = [ctx.Process(target=_open_in_child, args=(new_url, barrier, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=240) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert [outcome[0] for outcome in outcomes] == ["ok", "ok"], outcomes
    assert sorted(outcome[1] or "" for outcome in outcomes) == ["", "empty"], outcomes  # one made it
    assert all(outcome[2] == len(Base.metadata.tables) + 1 for outcome in outcomes)
