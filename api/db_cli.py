"""`python app.py db …`: database commands (today: copying a one-box SQLite history into PostgreSQL)."""

from __future__ import annotations

import argparse
from pathlib import Path

from services.database import TransferError, copy_sqlite_to
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
        report = copy_sqlite_to(source, args.url)
    except TransferError as err:
        raise SystemExit(f"Error: {err}") from None
    for table in report:
        print(f"{table.table}: {table.copied} copied, {table.already_there} already there")
    print("Done. Set ATELIER_DATABASE_URL to this URL (and keep the images folder or store) to use it.")
