"""Accounts: argon2 hashes, names and passwords checked, admins, and when serving without accounts is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.accounts import AccountError, AccountService, exposure_problem
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
