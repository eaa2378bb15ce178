"""Persistence: Peewee models on SQLite, migrations, and atomic image files. Never imports torch."""
