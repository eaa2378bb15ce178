"""`python app.py users …`: the account commands, one more way in beside REST; it calls services only."""

from __future__ import annotations

import argparse
import sys

from services.accounts import AccountError, open_accounts
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

The accounts live in the database the server uses: SQLite in the data dir, or ATELIER_DATABASE_URL (PostgreSQL)
when set, as for the server. Restart Atelier after adding the first account: without accounts it runs without
login, on a loopback address only.
"""


def users_main(argv: list[str]) -> None:
    """`python app.py users add|list|remove|passwd [NAME] [--admin] [--data-dir DIR]`."""
    parser = argparse.ArgumentParser(
        prog="python app.py users", description="Manage Atelier's accounts (argon2 password hashes in the database).",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=USERS_EPILOG)
    parser.add_argument("action", choices=["add", "list", "remove", "passwd"],
                        help="add NAME: a new account (asks for the password twice); list: every account; "
                             "remove NAME: the account (its work stays); passwd NAME: a new password")
    parser.add_argument("name", nargs="?", help="the account's name (not for list)")
    parser.add_argument("--admin", action="store_true", help="with add: this user sees everyone's work")
    parser.add_argument("--data-dir", metavar="DIR", help="the data dir whose database holds the accounts "
                                                          "(default: ATELIER_DATA_DIR, else ./data)")
    args = parser.parse_args(argv)
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
        if args.action == "add":
            accounts.add(args.name, read_password(), admin=args.admin)
            print(f"Added {args.name}{' (admin)' if args.admin else ''}. Restart Atelier if it runs without login.")
        elif args.action == "passwd":
            accounts.set_password(args.name, read_password("New password: "))
            print(f"Changed the password of {args.name}.")
        else:
            accounts.remove(args.name)
            print(f"Removed {args.name}; their jobs and conversations stay in the database.")
    except AccountError as err:
        raise SystemExit(f"Error: {err}") from None
