"""Accounts: argon2 hashes, names and passwords checked, admins, and when serving without accounts is refused."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import services.accounts
from services.accounts import AccountError, AccountService, LastAdminError, exposure_problem
from storage.db import open_database
from storage.models import Account


@pytest.fixture
def accounts(db_location: Path | str) -> AccountService:
    open_database(db_location)
    return AccountService()


def test_add_verify_and_change_password(accounts: AccountService) -> None:
    assert not accounts.any()
    accounts.add("alice", "correct horse")
    assert accounts.any()
    assert Account.get(Account.name == "alice").password_hash.startswith("$argon2")
    assert accounts.verify("alice", "correct horse")
    assert not accounts.verify("alice", "wrong horse")
    assert not accounts.verify("nobody", "correct horse")
    accounts.set_password("alice", "battery staple")
    assert accounts.verify("alice", "battery staple")
    assert not accounts.verify("alice", "correct horse")


def test_bad_requests_are_refused(accounts: AccountService) -> None:
    accounts.add("alice", "correct horse")
    with pytest.raises(AccountError, match="already exists"):
        accounts.add("alice", "another pass")
    with pytest.raises(AccountError, match="at least 8"):
        accounts.add("bob", "short")
    with pytest.raises(AccountError, match="letters, digits"):
        accounts.add("../etc", "long enough")
    with pytest.raises(AccountError, match="no user"):
        accounts.remove("nobody")
    with pytest.raises(AccountError, match="no user"):
        accounts.set_password("nobody", "long enough")
    assert [u["name"] for u in accounts.list()] == ["alice"]


def test_a_name_taken_by_another_replica_between_check_and_insert_is_refused(
        accounts: AccountService, monkeypatch: pytest.MonkeyPatch) -> None:
    accounts.add("alice", "correct horse")
    # As if another replica's insert landed after this one looked: the unique name in the database decides.
    monkeypatch.setattr(Account, "get_or_none", classmethod(lambda cls, *where: None))
    with pytest.raises(AccountError, match="already exists"):
        accounts.add("alice", "another pass")
    monkeypatch.undo()
    assert [u["name"] for u in accounts.list()] == ["alice"]
    assert accounts.verify("alice", "correct horse")


def test_admins_see_everything_others_their_own(accounts: AccountService) -> None:
    accounts.add("root", "long enough", admin=True)
    accounts.add("alice", "long enough")
    assert accounts.viewer("root").scope is None
    assert accounts.viewer("alice").scope == "alice"
    assert accounts.viewer("").scope == ""  # single-user mode owns what it makes


@pytest.mark.parametrize(
    ("host", "share", "users", "insecure", "refused"),
    [
        ("127.0.0.1", False, False, False, False),
        ("localhost", False, False, False, False),
        ("0.0.0.0", False, False, False, True),
        ("192.168.1.5", False, False, False, True),
        ("127.0.0.1", True, False, False, True),
        ("0.0.0.0", True, True, False, False),
        ("0.0.0.0", True, False, True, False),
    ],
)
def test_serving_without_accounts_is_refused_off_loopback(host: str, share: bool, users: bool, insecure: bool,
                                                           refused: bool) -> None:
    problem = exposure_problem(host, share, users, insecure)
    assert (problem is not None) == refused
    if refused:
        assert "users add" in problem
        assert "--insecure-no-auth" in problem


CHANGES: dict[str, Callable[[AccountService, str], object]] = {
    "demotes": lambda accounts, name: accounts.set_admin(name, False, keep_an_admin=True),
    "disables": lambda accounts, name: accounts.set_disabled(name, True, keep_an_admin=True),
    "deletes": lambda accounts, name: accounts.remove(name, keep_an_admin=True),
}


@pytest.mark.parametrize(("first", "second"), [("demotes", "demotes"), ("disables", "deletes")])
def test_two_admins_removing_each_other_at_once_leave_one(accounts: AccountService, monkeypatch: pytest.MonkeyPatch,
                                                          first: str, second: str) -> None:
    """Each in a thread of its own (a connection of its own): the check and the change are one transaction with the
    admins' rows locked, so the second waits for the first and is refused. Without the lock both checks would see
    two admins, meet, and both change: no admin left. The meeting is forced: after its check each waits (a while at
    most) for the other to have checked too."""
    for name in ("ann", "ben"):
        accounts.add(name, "a long enough password", admin=True)
    checked = threading.Barrier(2)
    check = services.accounts._keep_an_admin

    def check_then_meet(name: str, what: str) -> None:
        check(name, what)
        with contextlib.suppress(threading.BrokenBarrierError):
            checked.wait(timeout=1.5)  # with the lock held, the other cannot get here: the wait times out

    monkeypatch.setattr(services.accounts, "_keep_an_admin", check_then_meet)
    outcomes: dict[str, str] = {}

    def act(who: str, change: str, whom: str) -> None:
        try:
            CHANGES[change](AccountService(), whom)
            outcomes[who] = "done"
        except LastAdminError as err:
            outcomes[who] = str(err)

    threads = [threading.Thread(target=act, args=("ann", first, "ben")),
               threading.Thread(target=act, args=("ben", second, "ann"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    done, refused = sorted(outcomes.values(), key=lambda outcome: outcome != "done")
    assert done == "done", outcomes
    assert "is the last enabled admin" in refused, outcomes
    left = [a.name for a in Account.select().where(Account.is_admin & ~Account.disabled)]
    assert len(left) == 1
