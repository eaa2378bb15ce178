"""`python app.py users …`: the account commands, one more way in beside REST; it calls services only."""

from __future__ import annotations

import argparse
import sys

from services.accounts import AccountError, AccountService, open_accounts
from settings import Settings


def read_password(prompt: str = "Password: ") -> str:
    """A new password, typed twice: from the terminal without echo, or two lines of stdin when piped."""
    import getpass

    if sys.stdin.isatty():
        first, second = getpass.getpass(prompt), getpass.getpass("Again: ")
    else:
        first, second = sys.stdin.readline().rstrip("\n"), sys.stdin.readline().rstrip("\n")
    if first != second:
        raise SystemExit("The two passwords differ; nothing was changed.")
    return first


USERS_EPILOG = """\
examples:
  python app.py users add alice            asks for the password twice (or reads two lines from stdin)
  python app.py users add root --admin     an admin sees everyone's work
  python app.py users list
  python app.py users admin alice          alice may now use the admin panel (--revoke takes it back)
  python app.py users disable bob          bob can no longer log in; his open sessions end within a second

The accounts live in the database the server uses: SQLite in the data dir, or ATELIER_DATABASE_URL (PostgreSQL)
when set, as for the server. Restart Atelier after adding the first account: without accounts it runs without
login, on a loopback address only.
"""


def users_main(argv: list[str]) -> None:
    """`python app.py users ACTION [NAME] [--admin] [--revoke] [--data-dir DIR]` (ACTION: see --help)."""
    parser = argparse.ArgumentParser(
        prog="python app.py users", description="Manage Atelier's accounts (argon2 password hashes in the database).",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=USERS_EPILOG)
    parser.add_argument("action", choices=["add", "list", "remove", "passwd", "admin", "disable", "enable"],
                        help="add NAME: a new account (asks for the password twice); list: every account; "
                             "remove NAME: the account (its work stays); passwd NAME: a new password; "
                             "admin NAME: grant the admin role (--revoke: take it back); disable NAME: the account "
                             "can no longer log in and its sessions end (its work stays); enable NAME: undo that")
    parser.add_argument("name", nargs="?", help="the account's name (not for list)")
    parser.add_argument("--admin", action="store_true", help="with add: this user sees everyone's work and may use "
                                                             "the admin panel")
    parser.add_argument("--revoke", action="store_true", help="with admin: take the admin role back")
    parser.add_argument("--data-dir", metavar="DIR", help="the data dir whose database holds the accounts "
                                                          "(default: ATELIER_DATA_DIR, else ./data)")
    args = parser.parse_args(argv)
    if args.revoke and args.action != "admin":
        raise SystemExit("--revoke goes with `users admin NAME` (it takes the admin role back).")
    settings = Settings(**({"data_dir": args.data_dir} if args.data_dir else {}))
    settings.ensure_dirs()
    accounts = open_accounts(settings.database_location)
    if args.action == "list":
        for user in accounts.list():
            print(f"{user['name']}{' (admin)' if user['admin'] else ''}  since {user['created_at'][:10]}")
        return
    if not args.name:
        raise SystemExit(f"users {args.action} needs a NAME.")
    try:
        print(_act(accounts, args))
    except AccountError as err:
        raise SystemExit(f"Error: {err}") from None


def _act(accounts: AccountService, args: argparse.Namespace) -> str:
    """Do what `args` asks on the account named; the line to print."""
    name = args.name
    if args.action == "admin":
        changed = accounts.set_admin(name, not args.revoke)
        if args.revoke:
            return f"{name} is no longer an admin." if changed else f"{name} was not an admin."
        return f"{name} is now an admin." if changed else f"{name} is already an admin."
    if args.action in ("disable", "enable"):
        disable = args.action == "disable"
        if not accounts.set_disabled(name, disable):
            return f"{name} is already {args.action}d."
        # The servers see the change within a second (services/accounts.py), ending a disabled user's sessions.
        return f"{name} is disabled: no new login, open sessions end." if disable else f"{name} may log in again."
    if args.action == "add":
        accounts.add(name, read_password(), admin=args.admin)
        return f"Added {name}{' (admin)' if args.admin else ''}. Restart Atelier if it runs without login."
    if args.action == "passwd":
        accounts.set_password(name, read_password("New password: "))
        return f"Changed the password of {name}."
    accounts.remove(name)
    return f"Removed {name}; their jobs and conversations stay in the database."

