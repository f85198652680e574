"""Anyone at the CLI is one identity, the local operator; acting as a named user needs their token."""

from __future__ import annotations

import pytest

from faceledger.accounts import (
    LOCAL_OPERATOR,
    add_user,
    cli_principal,
    local_operator,
    local_seat,
)
from faceledger.config import Settings
from faceledger.errors import AlreadyExists, AuthenticationFailed
from faceledger.ledger import Ledger
from faceledger.store import open_database


@pytest.fixture
def sessions(tmp_path):
    _, factory = open_database(Settings(home=tmp_path).database_url)
    with factory() as session:
        add_user(session, name="analyst", role="analyst", created_by="root")
        _, token = add_user(session, name="reviewer2", role="reviewer", created_by="root")
        session.commit()
    return factory, token


def test_a_name_alone_never_makes_you_a_named_user(sessions):
    factory, _ = sessions
    with factory() as session:
        for name in ("analyst", "reviewer2"):
            with pytest.raises(AuthenticationFailed, match="token"):
                cli_principal(session, token=None, claimed=name)
            with pytest.raises(AuthenticationFailed, match="named user"):
                local_operator(session, name)  # the engine's path today (FACELEDGER_OPERATOR=name)


def test_without_a_token_everyone_is_the_one_local_operator(sessions):
    factory, _ = sessions
    with factory() as session:
        first = cli_principal(session, token=None)
        second = cli_principal(session, token=None, claimed=LOCAL_OPERATOR)
    assert first == second and first.name == LOCAL_OPERATOR and first.role == "admin"


def test_a_token_acts_as_its_holder(sessions):
    factory, token = sessions
    with factory() as session:
        assert cli_principal(session, token=token, claimed="analyst").name == "reviewer2"
        with pytest.raises(AuthenticationFailed):
            cli_principal(session, token="flt_not-a-token")


def test_the_local_operator_name_is_reserved(sessions):
    factory, _ = sessions
    with factory() as session, pytest.raises(AlreadyExists, match="reserved"):
        add_user(session, name=LOCAL_OPERATOR, role="reviewer", created_by="root")


def test_the_os_user_is_ledgered_with_the_local_operator_entries(tmp_path, sessions):
    factory, _ = sessions
    ledger = Ledger(factory, tmp_path / "ledger.head")
    ledger.actor_context[LOCAL_OPERATOR] = local_seat()
    ledger.record(actor=LOCAL_OPERATOR, action="search", payload={"case": "c"})
    ledger.record(actor="reviewer2", action="review", payload={"case": "c"})
    mine, theirs = ledger.entries()
    assert mine["payload"]["acting_from"]["os_user"] == local_seat()["os_user"]
    assert "acting_from" not in theirs["payload"]
    assert ledger.verify().ok


def _first_use(url: str, start, errors) -> None:
    import time

    from sqlalchemy import event

    try:
        engine, factory = open_database(url)

        @event.listens_for(engine, "after_cursor_execute")
        def widen_the_window(_conn, _cursor, statement, *_):  # look up the user, then dawdle before inserting
            if statement.lstrip().upper().startswith("SELECT") and "FROM users" in statement:
                time.sleep(0.3)

        start.wait(60)
        with factory() as session:
            assert local_operator(session).name == LOCAL_OPERATOR
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        errors.put(repr(exc))


def test_several_processes_using_the_cli_for_the_first_time_at_once(tmp_path):
    import multiprocessing

    url = Settings(home=tmp_path).database_url
    open_database(url)
    context = multiprocessing.get_context("spawn")
    start, errors = context.Event(), context.Queue()
    processes = [context.Process(target=_first_use, args=(url, start, errors)) for _ in range(4)]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(120)
    found = [errors.get() for _ in range(errors.qsize())]
    assert not found and all(p.exitcode == 0 for p in processes), found
