"""Database administration for the CLI: copying a one-box SQLite history into PostgreSQL.

The copy itself lives in storage/ (it speaks SQL); this module hands it on so that api/ never imports storage/.
"""

from __future__ import annotations

from storage.sqlite_to_postgres import TransferError, copy_sqlite_to

__all__ = ["TransferError", "copy_sqlite_to"]
