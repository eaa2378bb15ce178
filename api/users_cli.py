"""`python app.py users …`: the account commands, one more way in beside REST; it calls services only."""

from __future__ import annotations

import argparse
import sys

from services.accounts import AccountError, AccountService, open_accounts
from services.api_keys import ApiKeyService
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
  python app.py users key create alice --name laptop   prints a new API key once, on a line of its own
  python app.py users key list alice                   her keys: name, first characters, created, last used
  python app.py users key revoke alice laptop          the key stops working at once, on every replica

The accounts live in the database the server uses: SQLite in the data dir, or ATELIER_DATABASE_URL (PostgreSQL)
when set, as for the server. Restart Atelier after adding the first account: without accounts it runs without
login, on a loopback address only.
"""


def parse_with_data_dir(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """The arguments, with --data-dir added to the parser first (every users command takes it)."""
    parser.add_argument("--data-dir", metavar="DIR", help="the data dir whose database holds the accounts "
                                                          "(default: ATELIER_DATA_DIR, else ./data)")
    return parser.parse_args(argv)


def open_database_of(args: argparse.Namespace) -> AccountService:
    """The accounts in the database of the --data-dir (or ATELIER_DATA_DIR, ATELIER_DATABASE_URL) given."""
    settings = Settings(**({"data_dir": args.data_dir} if args.data_dir else {}))
    settings.ensure_dirs()
    return open_accounts(settings.database_location)


KEYS_EPILOG = """\
examples:
  python app.py users key create alice                 a key named key-1 (then key-2, ...)
  python app.py users key create alice --name laptop
  python app.py users key list alice
  python app.py users key revoke alice laptop

A key stands for its user on the OpenAI-compatible /v1, the AUTOMATIC1111-compatible /sdapi/v1, MCP and /api:
send it as `Authorization: Bearer atl_...` (or, for /sdapi/v1, as the password of HTTP basic with the user's name).
It is printed once and stored only as a hash: keep it somewhere safe, or create another.
"""


def keys_main(argv: list[str]) -> None:
    """`python app.py users key create|list|revoke USER [LABEL] [--name LABEL] [--data-dir DIR]`."""
    parser = argparse.ArgumentParser(
        prog="python app.py users key", description="Manage a user's API keys.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=KEYS_EPILOG)
    parser.add_argument("action", choices=["create", "list", "revoke"],
                        help="create USER: a new key, printed once; list USER: the user's keys; revoke USER LABEL: "
                             "delete the key named LABEL")
    parser.add_argument("user", help="the account's name")
    parser.add_argument("label", nargs="?", help="with revoke: the name of the key to revoke")
    parser.add_argument("--name", default="", help="with create: a name for the key (default key-1, key-2, ...)")
    args = parse_with_data_dir(parser, argv)
    open_database_of(args)
    keys = ApiKeyService()
    try:
        if args.action == "create":
            key, listed = keys.create(args.user, args.name)
            print(f"Created the key {listed['name']!r} for {args.user}. It is shown only now; keep it safe:",
                  file=sys.stderr)
            print(key)
        elif args.action == "list":
            for row in keys.list(args.user):
                used = (row["last_used_at"] or "never")[:19].replace("T", " ")
                print(f"{row['name']}  {row['prefix']}  created {row['created_at'][:10]}  last used {used}")
        elif not args.label:
            raise SystemExit("users key revoke needs the key's name: python app.py users key revoke USER LABEL.")
        elif keys.revoke(args.user, args.label):
            print(f"Revoked the key {args.label!r} of {args.user}; it no longer works.")
        else:
            raise SystemExit(f"Error: {args.user} has no key named {args.label!r} (see: users key list "
                             f"{args.user}).")
    except AccountError as err:
        raise SystemExit(f"Error: {err}") from None


def users_main(argv: list[str]) -> None:
    """`python app.py users ACTION [NAME] [--admin] [--revoke] [--data-dir DIR]` (ACTION: see --help), and
    `users key …`."""
    if argv[:1] == ["key"]:
        keys_main(argv[1:])
        return
    parser = argparse.ArgumentParser(
        prog="python app.py users", description="Manage Atelier's accounts (argon2 password hashes in the database).",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=USERS_EPILOG)
    parser.add_argument("action", choices=["add", "list", "remove", "passwd", "admin", "disable", "enable", "key"],
                        help="add NAME: a new account (asks for the password twice); list: every account; "
                             "remove NAME: the account and its API keys (its work stays); passwd NAME: a new "
                             "password; admin NAME: grant the admin role (--revoke: take it back); disable NAME: "
                             "the account can no longer log in and its sessions end (its work stays); enable NAME: "
                             "undo that; key create|list|revoke USER: API keys (users key --help)")
    parser.add_argument("name", nargs="?", help="the account's name (not for list)")
    parser.add_argument("--admin", action="store_true", help="with add: this user sees everyone's work and may use "
                                                             "the admin panel")
    parser.add_argument("--revoke", action="store_true", help="with admin: take the admin role back")
    args = parse_with_data_dir(parser, argv)
    if args.revoke and args.action != "admin":
        raise SystemExit("--revoke goes with `users admin NAME` (it takes the admin role back).")
    accounts = open_database_of(args)
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
    if args.action == "remove":
        accounts.remove(name)
        return f"Removed {name}; their jobs and conversations stay in the database."
    # `key` reaches here only after another option (users --data-dir DIR key …): never read it as anything else.
    raise SystemExit("Put `key` first: python app.py users key create|list|revoke USER [--data-dir DIR].")

