"""`python app.py db …`: database commands (today: copying a one-box SQLite history into PostgreSQL)."""

from __future__ import annotations

import argparse
from pathlib import Path

from services.database_copy import CopyRefused, copy_history_to_postgres
from settings import Settings


def db_main(argv: list[str]) -> None:
    """`python app.py db migrate-sqlite-to URL [--data-dir DIR | --sqlite FILE]`."""
    parser = argparse.ArgumentParser(prog="atelier db", description="Atelier database commands")
    sub = parser.add_subparsers(dest="action", required=True)
    copy = sub.add_parser("migrate-sqlite-to", help="copy the SQLite history (every table, ids kept) into "
                                                    "PostgreSQL; running it again copies only what is missing")
    copy.add_argument("url", help="postgresql://user:password@host:5432/name")
    where = copy.add_mutually_exclusive_group()
    where.add_argument("--data-dir", help="the data dir whose atelier.db is copied (default: the settings')")
    where.add_argument("--sqlite", help="a SQLite file to copy instead")
    args = parser.parse_args(argv)
    source = Path(args.sqlite) if args.sqlite else Settings(
        **({"data_dir": args.data_dir} if args.data_dir else {})).db_path
    try:
        lines = copy_history_to_postgres(source, args.url)
    except CopyRefused as err:
        raise SystemExit(f"Error: {err}") from None
    print("\n".join(lines))
