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


def users_main(argv: list[str]) -> None:
    """`python app.py users add|list|remove|passwd|admin [NAME] [--admin] [--revoke] [--data-dir DIR]`."""
    parser = argparse.ArgumentParser(prog="atelier users", description="Manage Atelier accounts")
    parser.add_argument("action", choices=["add", "list", "remove", "passwd", "admin"])
    parser.add_argument("name", nargs="?")
    parser.add_argument("--admin", action="store_true", help="with add: this user sees everyone's work and may "
                        "use the admin panel")
    parser.add_argument("--revoke", action="store_true", help="with admin: take the admin role back")
    parser.add_argument("--data-dir")
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
        if args.action == "admin":
            changed = accounts.set_admin(args.name, not args.revoke)
            if args.revoke:
                print(f"{args.name} is no longer an admin." if changed else f"{args.name} was not an admin.")
            else:
                print(f"{args.name} is now an admin." if changed else f"{args.name} is already an admin.")
        elif args.action == "add":
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

