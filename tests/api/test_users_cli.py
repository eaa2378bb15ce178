"""The `users` command: accounts added, listed, changed and removed from the command line, through the services."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from api.users_cli import read_password, users_main
from services.accounts import AccountService


def test_the_users_command_reads_the_password_twice_from_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret-pass\ns3cret-pass\n"))
    users_main(["add", "alice", "--admin", "--data-dir", str(tmp_path)])
    monkeypatch.setattr(sys, "stdin", io.StringIO("one-password\nanother-one\n"))
    with pytest.raises(SystemExit, match="differ"):
        users_main(["add", "bob", "--data-dir", str(tmp_path)])
    users_main(["list", "--data-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "alice (admin)" in out
    assert "bob" not in out.split("Added")[-1]
    assert AccountService().verify("alice", "s3cret-pass")
    with pytest.raises(SystemExit, match="no user 'bob'"):
        users_main(["remove", "bob", "--data-dir", str(tmp_path)])


def test_passwd_and_remove_change_the_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data-dir", str(tmp_path)]
    monkeypatch.setattr(sys, "stdin", io.StringIO("first-pass\nfirst-pass\n"))
    users_main(["add", "carol", *data])
    monkeypatch.setattr(sys, "stdin", io.StringIO("second-pass\nsecond-pass\n"))
    users_main(["passwd", "carol", *data])
    assert AccountService().verify("carol", "second-pass")
    assert not AccountService().verify("carol", "first-pass")
    users_main(["remove", "carol", *data])
    assert not AccountService().any()
    out = capsys.readouterr().out.splitlines()
    assert out == ["Added carol. Restart Atelier if it runs without login.",
                   "Changed the password of carol.",
                   "Removed carol; their jobs and conversations stay in the database."]


def test_bad_commands_change_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = ["--data-dir", str(tmp_path)]
    with pytest.raises(SystemExit, match="users remove needs a NAME"):
        users_main(["remove", *data])
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\nshort\n"))
    with pytest.raises(SystemExit, match="Error: password must have at least 8"):
        users_main(["add", "dave", *data])
    with pytest.raises(SystemExit):  # argparse refuses an unknown action
        users_main(["rename", "dave", *data])
    assert not AccountService().any()


def test_read_password_asks_the_terminal_twice_without_echo(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    prompts: list[str] = []
    answers = iter(["typed-pass", "typed-pass", "typed-pass", "typo-pass"])

    def getpass(prompt: str) -> str:
        prompts.append(prompt)
        return next(answers)

    monkeypatch.setattr(sys, "stdin", Terminal())
    monkeypatch.setattr("getpass.getpass", getpass)
    assert read_password("New password: ") == "typed-pass"
    with pytest.raises(SystemExit, match="differ"):
        read_password()
    assert prompts == ["New password: ", "Again: ", "Password: ", "Again: "]


def test_admin_grants_and_revokes_the_admin_role(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data-dir", str(tmp_path)]
    monkeypatch.setattr(sys, "stdin", io.StringIO("erin-pass\nerin-pass\n"))
    users_main(["add", "erin", *data])
    capsys.readouterr()
    users_main(["admin", "erin", *data])
    assert AccountService().viewer("erin").admin
    users_main(["admin", "erin", *data])
    users_main(["admin", "erin", "--revoke", *data])
    assert not AccountService().viewer("erin").admin
    users_main(["admin", "erin", "--revoke", *data])
    assert capsys.readouterr().out.splitlines() == ["erin is now an admin.", "erin is already an admin.",
                                                    "erin is no longer an admin.", "erin was not an admin."]
    with pytest.raises(SystemExit, match="no user 'frank'"):
        users_main(["admin", "frank", *data])
    with pytest.raises(SystemExit, match="--revoke goes with `users admin NAME`"):
        users_main(["remove", "erin", "--revoke", *data])
    assert AccountService().any()  # the misuse removed nothing


def test_a_disabled_account_cannot_log_in_and_keeps_its_role(tmp_path: Path) -> None:
    from storage.db import open_database

    open_database(tmp_path / "atelier.db")
    accounts = AccountService()
    accounts.add("gina", "gina-password", admin=True)
    assert accounts.set_disabled("gina")
    assert not accounts.set_disabled("gina")
    assert not accounts.verify("gina", "gina-password")
    assert accounts.list()[0] == {"name": "gina", "admin": True, "disabled": True,
                                  "created_at": accounts.list()[0]["created_at"]}
    assert accounts.set_disabled("gina", False)
    assert accounts.verify("gina", "gina-password")
def test_users_key_creates_prints_once_lists_and_revokes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from services.api_keys import ApiKeyService

    data = ["--data-dir", str(tmp_path)]
    monkeypatch.setattr(sys, "stdin", io.StringIO("first-pass\nfirst-pass\n"))
    users_main(["add", "dave", *data])
    capsys.readouterr()
    users_main(["key", "create", "dave", "--name", "laptop", *data])
    made = capsys.readouterr()
    key = made.out.strip()
    assert made.out == f"{key}\n"  # the key alone on stdout (a script can read it), the note on stderr
    assert "shown only now" in made.err
    assert ApiKeyService().user_of(key) == "dave"
    users_main(["key", "list", "dave", *data])
    listed = capsys.readouterr().out
    assert listed.startswith(f"laptop  {key[:10]}…")
    assert key not in listed
    with pytest.raises(SystemExit, match="already has a key named 'laptop'"):
        users_main(["key", "create", "dave", "--name", "laptop", *data])
    with pytest.raises(SystemExit, match="no user 'erin'"):
        users_main(["key", "create", "erin", *data])
    with pytest.raises(SystemExit, match="has no key named 'phone'"):
        users_main(["key", "revoke", "dave", "phone", *data])
    users_main(["key", "revoke", "dave", "laptop", *data])
    assert "no longer works" in capsys.readouterr().out
    assert ApiKeyService().user_of(key) is None
