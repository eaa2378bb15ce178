"""`python app.py db …`: database commands (today: copying a one-box SQLite history into PostgreSQL)."""

from __future__ import annotations

import argparse
from pathlib import Path

from services.database_copy import CopyRefused, copy_history_to_postgres
from settings import Settings

DB_EPILOG = """\
example (moving a one-box install to PostgreSQL before adding replicas):
  python app.py db migrate-sqlite-to postgresql://atelier:PASSWORD@db.internal:5432/atelier
  then set ATELIER_DATABASE_URL to the same URL, and copy data/images/ into the S3 bucket
  (aws s3 sync data/images s3://bucket/prefix, or mc mirror) if ATELIER_STORAGE_URL is set.
"""


def db_main(argv: list[str]) -> None:
    """`python app.py db migrate-sqlite-to URL [--data-dir DIR | --sqlite FILE]`."""
    parser = argparse.ArgumentParser(prog="python app.py db", description="Atelier's database commands.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=DB_EPILOG)
    sub = parser.add_subparsers(dest="action", required=True)
    copy = sub.add_parser("migrate-sqlite-to", help="copy the SQLite history (every table, ids kept) into "
                                                    "PostgreSQL; running it again copies only what is missing",
                          epilog=DB_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    copy.add_argument("url", help="postgresql://user:password@host:5432/name")
    where = copy.add_mutually_exclusive_group()
    where.add_argument("--data-dir", metavar="DIR", help="the data dir whose atelier.db is copied (default: "
                                                           "ATELIER_DATA_DIR, else ./data)")
    where.add_argument("--sqlite", metavar="FILE", help="a SQLite file to copy instead")
    args = parser.parse_args(argv)
    source = Path(args.sqlite) if args.sqlite else Settings(
        **({"data_dir": args.data_dir} if args.data_dir else {})).db_path
    try:
        lines = copy_history_to_postgres(source, args.url)
    except CopyRefused as err:
        raise SystemExit(f"Error: {err}") from None
    print("\n".join(lines))
