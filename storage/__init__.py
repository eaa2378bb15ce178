"""Persistence: Peewee models on SQLite or PostgreSQL, migrations, and atomic image files. Never imports torch."""
