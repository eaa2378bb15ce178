"""Ordered, named, idempotent migrations, recorded in the `migrations` table."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from peewee import SQL, BooleanField, CharField, Field, FloatField, IntegerField, SqliteDatabase
from playhouse.migrate import SchemaMigrator
from playhouse.migrate import migrate as run_operations

log = logging.getLogger(__name__)

Migration = Callable[[SqliteDatabase], None]


def m001_image_jobs(db: SqliteDatabase) -> None:
    """Image jobs and their files."""
    db.execute_sql(
        """
        CREATE TABLE IF NOT EXISTS imagejob (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user VARCHAR(255) NOT NULL DEFAULT '',
            created_at DATETIME NOT NULL,
            finished_at DATETIME,
            backend VARCHAR(255) NOT NULL,
            model VARCHAR(255) NOT NULL,
            prompt TEXT NOT NULL,
            negative_prompt TEXT NOT NULL DEFAULT '',
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            steps INTEGER NOT NULL,
            cfg_scale REAL NOT NULL,
            seed INTEGER NOT NULL,
            seed_used INTEGER,
            sampler VARCHAR(255) NOT NULL,
            batch_count INTEGER NOT NULL DEFAULT 1,
            status VARCHAR(255) NOT NULL DEFAULT 'running',
            error TEXT NOT NULL DEFAULT '',
            duration_s REAL,
            cached INTEGER NOT NULL DEFAULT 0,
            extra TEXT NOT NULL DEFAULT '{}'
        )
        """
    )
    db.execute_sql("CREATE INDEX IF NOT EXISTS imagejob_user ON imagejob (user)")
    db.execute_sql("CREATE INDEX IF NOT EXISTS imagejob_created_at ON imagejob (created_at)")
    db.execute_sql("CREATE INDEX IF NOT EXISTS imagejob_status ON imagejob (status)")
    db.execute_sql(
        """
        CREATE TABLE IF NOT EXISTS imagefile (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id INTEGER NOT NULL REFERENCES imagejob (id) ON DELETE CASCADE,
            "index" INTEGER NOT NULL,
            path VARCHAR(255) NOT NULL,
            seed INTEGER NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL
        )
        """
    )
    db.execute_sql("CREATE INDEX IF NOT EXISTS imagefile_job_id ON imagefile (job_id)")


def m002_conversations(db: SqliteDatabase) -> None:
    """Chat conversations and their messages (an assistant's reasoning kept apart from its answer)."""
    db.execute_sql(
        """
        CREATE TABLE IF NOT EXISTS conversation (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user VARCHAR(255) NOT NULL DEFAULT '',
            title VARCHAR(255) NOT NULL DEFAULT '',
            created_at DATETIME NOT NULL,
            updated_at DATETIME NOT NULL
        )
        """
    )
    db.execute_sql("CREATE INDEX IF NOT EXISTS conversation_user_updated ON conversation (user, updated_at)")
    db.execute_sql(
        """
        CREATE TABLE IF NOT EXISTS message (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation_id INTEGER NOT NULL REFERENCES conversation (id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            role VARCHAR(16) NOT NULL,
            content TEXT NOT NULL DEFAULT '',
            reasoning TEXT NOT NULL DEFAULT '',
            status VARCHAR(16) NOT NULL DEFAULT 'done',
            error TEXT NOT NULL DEFAULT '',
            finish_reason VARCHAR(16) NOT NULL DEFAULT '',
            model VARCHAR(255) NOT NULL DEFAULT '',
            params TEXT NOT NULL DEFAULT '{}',
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            reasoning_tokens INTEGER NOT NULL DEFAULT 0,
            reasoning_s REAL,
            duration_s REAL,
            created_at DATETIME NOT NULL,
            UNIQUE (conversation_id, position)
        )
        """
    )


def m003_accounts_and_cache(db: SqliteDatabase) -> None:
    """User accounts, and cache keys on image jobs and replies (identical requests reuse stored results)."""
    db.execute_sql(
        """
        CREATE TABLE IF NOT EXISTS account (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name VARCHAR(64) NOT NULL UNIQUE,
            password_hash VARCHAR(255) NOT NULL,
            is_admin INTEGER NOT NULL DEFAULT 0,
            created_at DATETIME NOT NULL
        )
        """
    )
    db.execute_sql("ALTER TABLE imagejob ADD COLUMN cache_key VARCHAR(64)")
    db.execute_sql("CREATE INDEX IF NOT EXISTS imagejob_cache_key ON imagejob (user, cache_key)")
    db.execute_sql("ALTER TABLE message ADD COLUMN cache_key VARCHAR(64)")
    db.execute_sql("ALTER TABLE message ADD COLUMN cached INTEGER NOT NULL DEFAULT 0")
    db.execute_sql("CREATE INDEX IF NOT EXISTS message_cache_key ON message (cache_key)")


def m004_reply_drafts(db: SqliteDatabase) -> None:
    """Replies being written, saved as they stream, so that a crash cannot lose them without a trace."""
    db.execute_sql(
        """
        CREATE TABLE IF NOT EXISTS replydraft (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation_id INTEGER NOT NULL REFERENCES conversation (id) ON DELETE CASCADE,
            answers_id INTEGER NOT NULL REFERENCES message (id) ON DELETE CASCADE,
            mode VARCHAR(16) NOT NULL,
            content TEXT NOT NULL DEFAULT '',
            reasoning TEXT NOT NULL DEFAULT '',
            model VARCHAR(255) NOT NULL DEFAULT '',
            params TEXT NOT NULL DEFAULT '{}',
            started_at DATETIME NOT NULL,
            updated_at DATETIME NOT NULL
        )
        """
    )
    db.execute_sql("CREATE INDEX IF NOT EXISTS replydraft_conversation_id ON replydraft (conversation_id)")
    db.execute_sql("CREATE INDEX IF NOT EXISTS replydraft_answers_id ON replydraft (answers_id)")


def m005_image_modes(db: SqliteDatabase) -> None:
    """img2img, inpainting, hires fix and model choice on image jobs (issue 13); existing rows become txt2img jobs
    with A1111's defaults. Written with playhouse.migrate, so that PostgreSQL runs it too."""
    def column(field_type: type[Field], default: str) -> Field:
        # NOT NULL with a DEFAULT in the DDL itself: rows already there take it in the one ALTER TABLE. (peewee's
        # own path adds a nullable column, fills it, then sets NOT NULL, which on SQLite rebuilds the table, and
        # dropping the old imagejob inside our transaction would cascade-delete every imagefile row.)
        return field_type(constraints=[SQL(f"DEFAULT {default}")])

    columns: dict[str, Field] = {
        "mode": column(CharField, "'txt2img'"),
        "init_image_sha": column(CharField, "''"),
        "mask_sha": column(CharField, "''"),
        "denoising_strength": column(FloatField, "0.75"),
        "resize_mode": column(IntegerField, "0"),
        "mask_blur": column(IntegerField, "4"),
        "inpainting_fill": column(IntegerField, "1"),
        "inpaint_full_res": column(BooleanField, "FALSE"),
        "inpaint_full_res_padding": column(IntegerField, "32"),
        "inpainting_mask_invert": column(IntegerField, "0"),
        "enable_hr": column(BooleanField, "FALSE"),
        "hr_scale": column(FloatField, "2.0"),
        "hr_upscaler": column(CharField, "'Latent'"),
        "hr_second_pass_steps": column(IntegerField, "0"),
        "checkpoint": column(CharField, "''"),
        "vae": column(CharField, "''"),
    }
    migrator = SchemaMigrator.from_database(db)
    present = {c.name for c in db.get_columns("imagejob")}
    run_operations(*(migrator.add_column("imagejob", name, field, allow_not_null=True)
                     for name, field in columns.items() if name not in present))
    # Finding the jobs that still use an input image (on delete, to remove unused input files).
    db.execute_sql("CREATE INDEX IF NOT EXISTS imagejob_init_image_sha ON imagejob (init_image_sha)")
    db.execute_sql("CREATE INDEX IF NOT EXISTS imagejob_mask_sha ON imagejob (mask_sha)")


# Append only: never reorder or rename an entry that has shipped.
MIGRATIONS: list[tuple[str, Migration]] = [
    ("001_image_jobs", m001_image_jobs),
    ("002_conversations", m002_conversations),
    ("003_accounts_and_cache", m003_accounts_and_cache),
    ("004_reply_drafts", m004_reply_drafts),
    ("005_image_modes", m005_image_modes),
]


def applied(db: SqliteDatabase) -> list[str]:
    """Names of the migrations already applied, in order."""
    db.execute_sql(
        "CREATE TABLE IF NOT EXISTS migrations (name VARCHAR(255) PRIMARY KEY, applied_at DATETIME NOT NULL)"
    )
    return [row[0] for row in db.execute_sql("SELECT name FROM migrations ORDER BY rowid")]


def migrate(db: SqliteDatabase, migrations: list[tuple[str, Migration]] | None = None) -> list[str]:
    """Apply every migration not yet applied, each in its own transaction; return the names applied now."""
    todo = MIGRATIONS if migrations is None else migrations
    done = set(applied(db))
    ran: list[str] = []
    for name, step in todo:
        if name in done:
            continue
        with db.atomic():
            step(db)
            db.execute_sql(
                "INSERT INTO migrations (name, applied_at) VALUES (?, ?)",
                (name, dt.datetime.now(dt.UTC).isoformat()),
            )
        log.info("applied migration %s", name)
        ran.append(name)
    return ran
