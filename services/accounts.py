"""User accounts: argon2 password hashes in the database, and who may see what."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from storage.connections import IntegrityError, database, for_update
from storage.db import open_database
from storage.models import Account, ApiKey

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MIN_PASSWORD = 8
# A hash to verify against when the name is unknown, so a wrong name takes as long as a wrong password.
_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("atelier-no-such-user")


class AccountError(ValueError):
    """A bad account request; the message says what is wrong."""


class LastAdminError(AccountError):
    """The change would leave the server with no enabled admin to run it."""


@dataclass(frozen=True)
class Viewer:
    """Who is asking: their name (owner of what they create) and whether they may see everyone's work."""

    name: str
    admin: bool = False

    @property
    def scope(self) -> str | None:
        """The owner to filter reads by, or None (everything) for an admin."""
        return None if self.admin else self.name


class AccountService:
    """Create, list, remove and verify accounts."""

    def add(self, name: str, password: str, admin: bool = False) -> None:
        """Create an account; AccountError for a bad or taken name or a short password."""
        if not NAME_PATTERN.match(name):
            raise AccountError("name must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit.")
        _check_password(password)
        # Hashed before the transaction: argon2 takes a while, and the transaction holds the database's write lock.
        password_hash = _hasher.hash(password)
        try:
            with database.atomic():
                if Account.get_or_none(Account.name == name) is not None:
                    raise AccountError(f"user {name!r} already exists.")
                Account.create(name=name, password_hash=password_hash, is_admin=admin)
        except IntegrityError:
            # PostgreSQL: another replica added the same name between the check and the insert.
            raise AccountError(f"user {name!r} already exists.") from None

    def remove(self, name: str, keep_an_admin: bool = False) -> None:
        """Delete an account and its API keys (its jobs and conversations stay, owned by the name): an account made
        again under the name later does not inherit the old keys. `keep_an_admin`: LastAdminError rather than delete
        the last enabled admin."""
        with database.atomic():
            if keep_an_admin:
                _keep_an_admin(name, "deleted")
            if Account.delete().where(Account.name == name).execute() == 0:
                raise AccountError(f"no user {name!r}.")
            ApiKey.delete().where(ApiKey.user == name).execute()

    def set_password(self, name: str, password: str) -> None:
        """Replace an account's password."""
        _check_password(password)
        if Account.update(password_hash=_hasher.hash(password)).where(Account.name == name).execute() == 0:
            raise AccountError(f"no user {name!r}.")

    def set_admin(self, name: str, admin: bool = True, keep_an_admin: bool = False) -> bool:
        """Grant (or take back) the admin role; whether it changed. AccountError for an unknown name;
        `keep_an_admin`: LastAdminError rather than demote the last enabled admin."""
        return self._set_flag(name, Account.is_admin, admin, "demoted" if keep_an_admin and not admin else "")

    def set_disabled(self, name: str, disabled: bool = True, keep_an_admin: bool = False) -> bool:
        """Disable an account (its password stops working; its work stays) or enable it again; whether it changed.
        AccountError for an unknown name; `keep_an_admin`: LastAdminError rather than disable the last enabled
        admin."""
        return self._set_flag(name, Account.disabled, disabled, "disabled" if keep_an_admin and disabled else "")

    @staticmethod
    def keep_an_admin(name: str, what: str) -> None:
        """LastAdminError when `name` is the last enabled admin (`what`: the change refused, in words)."""
        with database.atomic():
            _keep_an_admin(name, what)

    @staticmethod
    def _set_flag(name: str, flag: Any, value: bool, guard: str = "") -> bool:
        with database.atomic():
            if guard:  # checked and changed in one transaction, the admins' rows locked (_keep_an_admin)
                _keep_an_admin(name, guard)
            account = Account.get_or_none(Account.name == name)
            if account is None:
                raise AccountError(f"no user {name!r}.")
            if bool(getattr(account, flag.name)) == value:
                return False
            Account.update({flag: value}).where(Account.id == account.id).execute()
        return True

    def list(self) -> list[dict[str, object]]:
        """Every account, without its hash."""
        return [{"name": a.name, "admin": bool(a.is_admin), "disabled": bool(a.disabled),
                 "created_at": a.created_at.isoformat()}
                for a in Account.select().order_by(Account.name)]

    def exists(self, name: str) -> bool:
        """Whether an account of this name exists."""
        return bool(name) and Account.select().where(Account.name == name).exists()

    def any(self) -> bool:
        """Whether any account exists (if none, a loopback server runs in single-user mode)."""
        return Account.select().exists()

    def verify(self, name: str, password: str) -> bool:
        """True when the password is right and the account enabled; as slow for an unknown name or a disabled
        account as for a wrong password."""
        account = Account.get_or_none(Account.name == name)
        try:
            _hasher.verify(account.password_hash if account else _DUMMY_HASH, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return account is not None and not account.disabled

    def viewer(self, name: str) -> Viewer:
        """The Viewer for a logged-in name ('' in single-user mode, who owns everything there is)."""
        account = Account.get_or_none(Account.name == name) if name else None
        return Viewer(name, admin=bool(account and account.is_admin))


def open_accounts(location: Path | str) -> AccountService:
    """The accounts in the database at `location` (a SQLite file or a PostgreSQL URL), without the models (for
    the `users` command)."""
    open_database(location, pool_size=1)
    return AccountService()


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"password must have at least {MIN_PASSWORD} characters.")


def is_loopback(host: str) -> bool:
    """Whether `host` only listens on this machine."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_problem(host: str, share: bool, has_users: bool, insecure_no_auth: bool) -> str | None:
    """Why serving this way without accounts would be unsafe, or None when it is fine."""
    if has_users or insecure_no_auth:
        return None
    if share:
        return ("--share puts Atelier on a public link, and there are no accounts yet. Add one first with "
                "`python app.py users add NAME`, or pass --insecure-no-auth if you really mean to share it open.")
    if not is_loopback(host):
        return (f"--host {host} serves the network, and there are no accounts yet. Add one first with "
                "`python app.py users add NAME`, serve on 127.0.0.1, or pass --insecure-no-auth.")
    return None


def _keep_an_admin(name: str, what: str) -> None:
    """Inside a transaction: LastAdminError when `name` is the only enabled admin. The enabled admins' rows stay locked
    until the transaction ends (PostgreSQL's FOR UPDATE; SQLite's BEGIN IMMEDIATE holds the whole database), so two
    admins demoting, disabling or deleting each other at the same moment take turns, and the second one sees the
    first one's change (a waiting FOR UPDATE reads the row again once the lock is free) rather than a count that is
    no longer true."""
    admins = for_update(Account.select(Account.name).where(Account.is_admin & ~Account.disabled).order_by(Account.id))
    if [admin.name for admin in admins] == [name]:
        raise LastAdminError(f"{name} is the last enabled admin and cannot be {what}: grant another account the "
                             "admin role first.")
