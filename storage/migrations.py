"""Ordered, named, idempotent migrations, recorded in the `migrations` table, on SQLite and PostgreSQL alike.

A migration is a function of the database. It writes its DDL once with ddl(), whose $tokens become each
database's types, or it uses playhouse.migrate (`SchemaMigrator.from_database(db)`), which speaks both.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from string import Template
from typing import Any

from peewee import SQL, BooleanField, CharField, Database, DoubleField, Field, IntegerField, Table
from playhouse.migrate import SchemaMigrator
from playhouse.migrate import migrate as run_operations

from storage.connections import is_postgres, pinned

log = logging.getLogger(__name__)

Migration = Callable[[Database], None]

# What each $token of ddl() means per database. SQLite keeps exactly the schema it always had; PostgreSQL
# gets the types peewee's fields expect back (a boolean, a timestamp with its zone, a double, not a 4-byte REAL),
# and 8-byte integers where SQLite's 8-byte INTEGER holds more than PostgreSQL's 4-byte one (seeds reach 2**32 - 1).
DIALECTS: dict[str, dict[str, str]] = {
    "sqlite": {"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "datetime": "DATETIME", "real": "REAL",
               "bool": "INTEGER", "false": "0", "bigint": "INTEGER"},
    "postgresql": {"id": "SERIAL PRIMARY KEY", "datetime": "TIMESTAMPTZ", "real": "DOUBLE PRECISION",
                   "bool": "BOOLEAN", "false": "FALSE", "bigint": "BIGINT"},
}
# Any constant will do, as long as every replica uses the same one (pg_advisory_lock takes a bigint).
MIGRATION_LOCK = 0x41_74_65_6C_69_65_72  # "Atelier"


def ddl(db: Database, sql: str) -> None:
    """Run one DDL statement written with $id, $datetime, $real, $bool, $false and $bigint for this database."""
    db.execute_sql(Template(sql).substitute(DIALECTS["postgresql" if is_postgres(db) else "sqlite"]))


def m001_image_jobs(db: Database) -> None:
    """Image jobs and their files."""
    ddl(db, """
        CREATE TABLE IF NOT EXISTS imagejob (
            id $id,
            "user" VARCHAR(255) NOT NULL DEFAULT '',
            created_at $datetime NOT NULL,
            finished_at $datetime,
            backend VARCHAR(255) NOT NULL,
            model VARCHAR(255) NOT NULL,
            prompt TEXT NOT NULL,
            negative_prompt TEXT NOT NULL DEFAULT '',
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            steps INTEGER NOT NULL,
            cfg_scale $real NOT NULL,
            seed $bigint NOT NULL,
            seed_used $bigint,
            sampler VARCHAR(255) NOT NULL,
            batch_count INTEGER NOT NULL DEFAULT 1,
            status VARCHAR(255) NOT NULL DEFAULT 'running',
            error TEXT NOT NULL DEFAULT '',
            duration_s $real,
            cached $bool NOT NULL DEFAULT $false,
            extra TEXT NOT NULL DEFAULT '{}'
        )
        """
    )
    ddl(db, 'CREATE INDEX IF NOT EXISTS imagejob_user ON imagejob ("user")')
    ddl(db, "CREATE INDEX IF NOT EXISTS imagejob_created_at ON imagejob (created_at)")
    ddl(db, "CREATE INDEX IF NOT EXISTS imagejob_status ON imagejob (status)")
    ddl(db, """
        CREATE TABLE IF NOT EXISTS imagefile (
            id $id,
            job_id INTEGER NOT NULL REFERENCES imagejob (id) ON DELETE CASCADE,
            "index" INTEGER NOT NULL,
            path VARCHAR(255) NOT NULL,
            seed $bigint NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL
        )
        """
    )
    ddl(db, "CREATE INDEX IF NOT EXISTS imagefile_job_id ON imagefile (job_id)")


def m002_conversations(db: Database) -> None:
    """Chat conversations and their messages (an assistant's reasoning kept apart from its answer)."""
    ddl(db, """
        CREATE TABLE IF NOT EXISTS conversation (
            id $id,
            "user" VARCHAR(255) NOT NULL DEFAULT '',
            title VARCHAR(255) NOT NULL DEFAULT '',
            created_at $datetime NOT NULL,
            updated_at $datetime NOT NULL
        )
        """
    )
    ddl(db, 'CREATE INDEX IF NOT EXISTS conversation_user_updated ON conversation ("user", updated_at)')
    ddl(db, """
        CREATE TABLE IF NOT EXISTS message (
            id $id,
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
            reasoning_s $real,
            duration_s $real,
            created_at $datetime NOT NULL,
            UNIQUE (conversation_id, position)
        )
        """
    )


def m003_accounts_and_cache(db: Database) -> None:
    """User accounts, and cache keys on image jobs and replies (identical requests reuse stored results)."""
    ddl(db, """
        CREATE TABLE IF NOT EXISTS account (
            id $id,
            name VARCHAR(64) NOT NULL UNIQUE,
            password_hash VARCHAR(255) NOT NULL,
            is_admin $bool NOT NULL DEFAULT $false,
            created_at $datetime NOT NULL
        )
        """
    )
    ddl(db, "ALTER TABLE imagejob ADD COLUMN cache_key VARCHAR(64)")
    ddl(db, 'CREATE INDEX IF NOT EXISTS imagejob_cache_key ON imagejob ("user", cache_key)')
    ddl(db, "ALTER TABLE message ADD COLUMN cache_key VARCHAR(64)")
    ddl(db, "ALTER TABLE message ADD COLUMN cached $bool NOT NULL DEFAULT $false")
    ddl(db, "CREATE INDEX IF NOT EXISTS message_cache_key ON message (cache_key)")


def m004_reply_drafts(db: Database) -> None:
    """Replies being written, saved as they stream, so that a crash cannot lose them without a trace."""
    ddl(db, """
        CREATE TABLE IF NOT EXISTS replydraft (
            id $id,
            conversation_id INTEGER NOT NULL REFERENCES conversation (id) ON DELETE CASCADE,
            answers_id INTEGER NOT NULL REFERENCES message (id) ON DELETE CASCADE,
            mode VARCHAR(16) NOT NULL,
            content TEXT NOT NULL DEFAULT '',
            reasoning TEXT NOT NULL DEFAULT '',
            model VARCHAR(255) NOT NULL DEFAULT '',
            params TEXT NOT NULL DEFAULT '{}',
            started_at $datetime NOT NULL,
            updated_at $datetime NOT NULL
        )
        """
    )
    ddl(db, "CREATE INDEX IF NOT EXISTS replydraft_conversation_id ON replydraft (conversation_id)")
    ddl(db, "CREATE INDEX IF NOT EXISTS replydraft_answers_id ON replydraft (answers_id)")


def m005_image_modes(db: Database) -> None:
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
        "denoising_strength": column(DoubleField, "0.75"),
        "resize_mode": column(IntegerField, "0"),
        "mask_blur": column(IntegerField, "4"),
        "inpainting_fill": column(IntegerField, "1"),
        "inpaint_full_res": column(BooleanField, "FALSE"),
        "inpaint_full_res_padding": column(IntegerField, "32"),
        "inpainting_mask_invert": column(IntegerField, "0"),
        "enable_hr": column(BooleanField, "FALSE"),
        "hr_scale": column(DoubleField, "2.0"),
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
    ddl(db, "CREATE INDEX IF NOT EXISTS imagejob_init_image_sha ON imagejob (init_image_sha)")
    ddl(db, "CREATE INDEX IF NOT EXISTS imagejob_mask_sha ON imagejob (mask_sha)")


def m006_replica_owner(db: Database) -> None:
    """Which replica runs each image job and streams each reply: a replica that restarts beside running ones then
    recovers its own unfinished work, and only its own."""
    for table in ("imagejob", "replydraft"):
        if "replica" not in {c.name for c in db.get_columns(table)}:
            ddl(db, f"ALTER TABLE {table} ADD COLUMN replica VARCHAR(255) NOT NULL DEFAULT ''")
        ddl(db, f"CREATE INDEX IF NOT EXISTS {table}_replica ON {table} (replica)")


def m010_api_keys(db: Database) -> None:
    """API keys (stored as a sha256 digest, never the key itself), each user's API defaults (AUTOMATIC1111's
    options such as sd_model_checkpoint, per user) and the replicas' shared secrets."""
    ddl(db, """
        CREATE TABLE IF NOT EXISTS apikey (
            id $id,
            "user" VARCHAR(255) NOT NULL,
            name VARCHAR(255) NOT NULL,
            digest VARCHAR(255) NOT NULL UNIQUE,
            prefix VARCHAR(255) NOT NULL,
            created_at $datetime NOT NULL,
            last_used_at $datetime
        )
        """)
    ddl(db, 'CREATE UNIQUE INDEX IF NOT EXISTS apikey_user_name ON apikey ("user", name)')
    ddl(db, """
        CREATE TABLE IF NOT EXISTS useroption (
            id $id,
            "user" VARCHAR(255) NOT NULL,
            name VARCHAR(255) NOT NULL,
            value TEXT NOT NULL,
            updated_at $datetime NOT NULL
        )
        """)
    ddl(db, 'CREATE UNIQUE INDEX IF NOT EXISTS useroption_user_name ON useroption ("user", name)')
    # Secrets every replica shares, such as the key that signs the expiring image URLs of OpenAI's API.
    ddl(db, """
        CREATE TABLE IF NOT EXISTS serversecret (
            id $id,
            name VARCHAR(255) NOT NULL UNIQUE,
            value VARCHAR(255) NOT NULL
        )
        """)
def m030_request_log(db: Database) -> None:
    """The request log: one row per request and per job (issue 26). PostgreSQL numbers rows with a bigint: a busy
    server writes billions over its life, more than a 4-byte serial holds."""
    row_id = "BIGSERIAL PRIMARY KEY" if is_postgres(db) else "INTEGER PRIMARY KEY AUTOINCREMENT"
    ddl(db, f"""
        CREATE TABLE IF NOT EXISTS requestlog (
            id {row_id},
            started_at $datetime NOT NULL,
            request_id VARCHAR(255) NOT NULL DEFAULT '',
            "user" VARCHAR(255) NOT NULL DEFAULT '',
            client VARCHAR(255) NOT NULL DEFAULT '',
            route VARCHAR(255) NOT NULL DEFAULT '',
            kind VARCHAR(16) NOT NULL,
            status VARCHAR(16) NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            http_status INTEGER,
            duration_s $real,
            queue_wait_s $real,
            model VARCHAR(255) NOT NULL DEFAULT '',
            images INTEGER NOT NULL DEFAULT 0,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            gpu_s $real NOT NULL DEFAULT 0,
            replica VARCHAR(255) NOT NULL DEFAULT '',
            job_id $bigint
        )
        """
    )
    # The admin's filters and the usage sums read by time, or by user and time; retention deletes by time.
    ddl(db, "CREATE INDEX IF NOT EXISTS requestlog_started_at ON requestlog (started_at)")
    ddl(db, 'CREATE INDEX IF NOT EXISTS requestlog_user_started_at ON requestlog ("user", started_at)')
    ddl(db, "CREATE INDEX IF NOT EXISTS requestlog_request_id ON requestlog (request_id)")


def m031_admin_and_limits(db: Database) -> None:
    """Accounts an admin disabled, and per-user overrides of the rate limits and queue quota."""
    if "disabled" not in {c.name for c in db.get_columns("account")}:
        ddl(db, "ALTER TABLE account ADD COLUMN disabled $bool NOT NULL DEFAULT $false")
    ddl(db, """
        CREATE TABLE IF NOT EXISTS userlimit (
            id $id,
            account_id INTEGER NOT NULL UNIQUE REFERENCES account (id) ON DELETE CASCADE,
            image_jobs VARCHAR(255),
            chat_messages VARCHAR(255),
            uploads VARCHAR(255),
            reads VARCHAR(255),
            queue_quota INTEGER,
            updated_at $datetime NOT NULL,
            updated_by VARCHAR(255) NOT NULL DEFAULT ''
        )
        """
    )


def cn01_controlnet_units(db: Database) -> None:
    """An image job's ControlNet units (issue 24): their settings as JSON, each unit's picture by its inputs/ path."""
    if "controlnet" not in {c.name for c in db.get_columns("imagejob")}:
        ddl(db, "ALTER TABLE imagejob ADD COLUMN controlnet TEXT NOT NULL DEFAULT '[]'")


def rr01_refiner(db: Database) -> None:
    """An image job's SDXL refiner and switch point, as it asked for them ("" and NULL: none)."""
    _add_column(db, "imagejob", "refiner_checkpoint", "VARCHAR(255) NOT NULL DEFAULT ''")
    _add_column(db, "imagejob", "refiner_switch_at", "$real")


def _add_column(db: Database, table: str, column: str, definition: str) -> None:
    """ALTER TABLE … ADD COLUMN unless the column is there (a migration may meet a half-built dev database)."""
    if column not in {c.name for c in db.get_columns(table)}:
        ddl(db, f"ALTER TABLE {table} ADD COLUMN {column} {definition}")


def m020_organise(db: Database) -> None:
    """Issue 25: favourite jobs and conversations, collections of jobs, per-user settings, and the indexes that
    history's filters use (a user's jobs by date, by seed, by favourite; files by seed)."""
    _add_column(db, "imagejob", "favourite", "$bool NOT NULL DEFAULT $false")
    _add_column(db, "conversation", "favourite", "$bool NOT NULL DEFAULT $false")
    ddl(db, 'CREATE INDEX IF NOT EXISTS imagejob_user_favourite ON imagejob ("user", favourite, id)')
    ddl(db, 'CREATE INDEX IF NOT EXISTS imagejob_user_created ON imagejob ("user", created_at, id)')
    ddl(db, 'CREATE INDEX IF NOT EXISTS imagejob_user_seed ON imagejob ("user", seed_used)')
    ddl(db, "CREATE INDEX IF NOT EXISTS imagefile_seed ON imagefile (seed)")
    ddl(db, 'CREATE INDEX IF NOT EXISTS conversation_user_favourite ON conversation ("user", favourite)')
    ddl(db, """
        CREATE TABLE IF NOT EXISTS collection (
            id $id,
            "user" VARCHAR(255) NOT NULL DEFAULT '',
            name VARCHAR(255) NOT NULL,
            created_at $datetime NOT NULL,
            updated_at $datetime NOT NULL,
            UNIQUE ("user", name)
        )
        """
    )
    ddl(db, """
        CREATE TABLE IF NOT EXISTS collectionitem (
            id $id,
            collection_id INTEGER NOT NULL REFERENCES collection (id) ON DELETE CASCADE,
            job_id INTEGER NOT NULL REFERENCES imagejob (id) ON DELETE CASCADE,
            added_at $datetime NOT NULL,
            UNIQUE (collection_id, job_id)
        )
        """
    )
    ddl(db, "CREATE INDEX IF NOT EXISTS collectionitem_job_id ON collectionitem (job_id)")
    ddl(db, """
        CREATE TABLE IF NOT EXISTS usersetting (
            id $id,
            "user" VARCHAR(255) NOT NULL DEFAULT '',
            key VARCHAR(255) NOT NULL,
            value TEXT NOT NULL DEFAULT 'null',
            updated_at $datetime NOT NULL,
            UNIQUE ("user", key)
        )
        """
    )


# SQLite: one FTS5 index per searched table, with external content (the text stays in the table; the index holds
# only terms) kept in step by triggers, so that every writer (the services, an import, a copy) updates it in its
# own transaction. Porter stemming without stop words, diacritics kept: what PostgreSQL's `atelier` configuration
# below does, so that both databases find the same rows.
_FTS5_TOKENIZE = "porter unicode61 remove_diacritics 0"
SEARCHED: dict[str, tuple[str, ...]] = {
    "imagejob": ("prompt", "negative_prompt"),
    "message": ("content", "reasoning"),
    "conversation": ("title",),
}


def _fts5_index(db: Database, table: str, columns: tuple[str, ...]) -> None:
    fts, cols = f"{table}_fts", ", ".join(columns)
    new, old = (", ".join(f"{row}.{c}" for c in columns) for row in ("new", "old"))
    changed = " OR ".join(f"old.{c} IS NOT new.{c}" for c in columns)
    add = f"INSERT INTO {fts}(rowid, {cols}) VALUES (new.id, {new});"  # noqa: S608 (names are constants)
    remove = f"INSERT INTO {fts}({fts}, rowid, {cols}) VALUES ('delete', old.id, {old});"  # noqa: S608
    # Every name here is a constant of this module (SEARCHED), never input (hence the noqa: S608).
    for statement in (
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {fts} USING fts5({cols}, content='{table}', content_rowid='id', "
        f"tokenize='{_FTS5_TOKENIZE}')",
        f"CREATE TRIGGER IF NOT EXISTS {fts}_insert AFTER INSERT ON {table} BEGIN {add} END",
        f"CREATE TRIGGER IF NOT EXISTS {fts}_delete AFTER DELETE ON {table} BEGIN {remove} END",
        # Only when the text changed: a job's row is saved several times while it runs.
        f"CREATE TRIGGER IF NOT EXISTS {fts}_update AFTER UPDATE OF {cols} ON {table} WHEN {changed} "
        f"BEGIN {remove} {add} END",
        f"INSERT INTO {fts}({fts}) VALUES ('rebuild')",  # noqa: S608 (the rows already there)
    ):
        db.execute_sql(statement)


# PostgreSQL: English stemming without stop words (a query of "the" finds "the", as on SQLite).
_PG_TEXT_CONFIG = """
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_ts_dict WHERE dictname = 'atelier_english_stem') THEN
    CREATE TEXT SEARCH DICTIONARY atelier_english_stem (TEMPLATE = snowball, Language = english);
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_ts_config WHERE cfgname = 'atelier') THEN
    CREATE TEXT SEARCH CONFIGURATION atelier (COPY = pg_catalog.english);
    ALTER TEXT SEARCH CONFIGURATION atelier ALTER MAPPING REPLACE english_stem WITH atelier_english_stem;
  END IF;
END $$
"""


def _pg_search_column(db: Database, table: str, columns: tuple[str, ...]) -> None:
    # A stored generated column: PostgreSQL itself keeps it in step with every write, and adding it computes it for
    # the rows already there. The first column weighs A, the second B (the reasoning, the negative prompt).
    vector = " || ".join(f"setweight(to_tsvector('atelier'::regconfig, {c}), '{weight}')"
                         for c, weight in zip(columns, "AB", strict=False))
    db.execute_sql(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS search tsvector "
                   f"GENERATED ALWAYS AS ({vector}) STORED")
    db.execute_sql(f"CREATE INDEX IF NOT EXISTS {table}_search ON {table} USING GIN (search)")


def m021_full_text_search(db: Database) -> None:
    """Issue 25: full-text indexes over prompts, messages and titles (FTS5 on SQLite, tsvector + GIN on
    PostgreSQL), built for the rows already there."""
    if is_postgres(db):
        db.execute_sql(_PG_TEXT_CONFIG)
    for table, columns in SEARCHED.items():
        (_pg_search_column if is_postgres(db) else _fts5_index)(db, table, columns)


# Append only: never reorder or rename an entry that has shipped.
MIGRATIONS: list[tuple[str, Migration]] = [
    ("001_image_jobs", m001_image_jobs),
    ("002_conversations", m002_conversations),
    ("003_accounts_and_cache", m003_accounts_and_cache),
    ("004_reply_drafts", m004_reply_drafts),
    ("005_image_modes", m005_image_modes),
    ("006_replica_owner", m006_replica_owner),
    ("010_api_keys", m010_api_keys),
    ("020_organise", m020_organise),
    ("021_full_text_search", m021_full_text_search),
    ("cn01_controlnet_units", cn01_controlnet_units),
    # Issue 26's (030_…, 031_…) come after the API keys' (010_…) and ControlNet's; 020_… is left to search.
    ("030_request_log", m030_request_log),
    ("031_admin_and_limits", m031_admin_and_limits),
    ("rr01_refiner", rr01_refiner),
]


_TABLE = Table("migrations", ("name", "applied_at"))


def _ensure_table(db: Database) -> None:
    if is_postgres(db):
        # rowid, which orders SQLite's table, does not exist here: a serial column does the same.
        db.execute_sql("CREATE TABLE IF NOT EXISTS migrations (seq SERIAL, name VARCHAR(255) PRIMARY KEY, "
                       "applied_at TIMESTAMPTZ NOT NULL)")
    else:
        db.execute_sql("CREATE TABLE IF NOT EXISTS migrations (name VARCHAR(255) PRIMARY KEY, "
                       "applied_at DATETIME NOT NULL)")


def applied(db: Database) -> list[str]:
    """Names of the migrations already applied, in order."""
    _ensure_table(db)
    query = _TABLE.bind(db).select(_TABLE.name).order_by(SQL("seq" if is_postgres(db) else "rowid"))
    return [row[0] for row in query.tuples()]


@contextmanager
def _exclusive(db: Database) -> Iterator[None]:
    """Only one process migrates at a time: replicas starting together on one PostgreSQL queue here, and each
    then sees what the one before applied. (A SQLite file belongs to one process.)"""
    if not is_postgres(db):
        yield
        return
    # A session lock, on one connection kept for the whole migration; it goes with the connection if the process
    # dies.
    with pinned(db):
        db.execute_sql("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            yield
        finally:
            db.execute_sql("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))


def migrate(db: Database, migrations: list[tuple[str, Migration]] | None = None) -> list[str]:
    """Apply every migration not yet applied, each in its own transaction; return the names applied now."""
    todo = MIGRATIONS if migrations is None else migrations
    ran: list[str] = []
    with _exclusive(db):
        done = set(applied(db))
        for name, step in todo:
            if name in done:
                continue
            with db.atomic():
                step(db)
                _TABLE.bind(db).insert(name=name, applied_at=_applied_at(db)).execute()
            log.info("applied migration %s", name)
            ran.append(name)
    return ran


def _applied_at(db: Database) -> Any:
    now = dt.datetime.now(dt.UTC)
    return now if is_postgres(db) else now.isoformat()
