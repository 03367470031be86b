"""Commit listeners: told after each commit, and never able to undo or fail one."""

from __future__ import annotations

import logging

from eventstore.sqlite import SQLiteEventStore
from tests.support.bank import Account, account_repository


def _opened(account_id: str) -> Account:
    account = Account(account_id)
    account.open("ann", 1)
    account.deposit(2)
    return account


def test_listener_is_told_the_head_position_after_each_commit(db_path):
    heads: list[int] = []
    with SQLiteEventStore(db_path) as store:
        store.add_commit_listener(heads.append)
        repo = account_repository(store)
        repo.save(_opened("a"))
        repo.save(_opened("b"))
        assert heads == [2, 4]
        assert store.head_position() == 4


def test_removed_listener_is_not_called(db_path):
    heads: list[int] = []
    with SQLiteEventStore(db_path) as store:
        store.add_commit_listener(heads.append)
        store.remove_commit_listener(heads.append)
        account_repository(store).save(_opened("a"))
        assert heads == []


def test_failing_listener_does_not_fail_the_stored_command(db_path, caplog):
    def broken(head: int) -> None:
        raise RuntimeError("listener bug")

    heads: list[int] = []
    with SQLiteEventStore(db_path) as store:
        store.add_commit_listener(broken)
        store.add_commit_listener(heads.append)
        repo = account_repository(store)
        account = _opened("a")
        with caplog.at_level(logging.ERROR):
            result = repo.save_with_command(account, "cmd-1")
        assert [e.version for e in result.events] == [1, 2]
        assert account.stored_version == 2 and account.uncommitted_events == ()
        assert heads == [2], "later listeners still hear of the commit"
        assert any("listener bug" in (r.exc_text or str(r.exc_info)) for r in caplog.records)
