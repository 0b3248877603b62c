"""Transactional store for mutable state: SQLite (WAL) embedded by default, PostgreSQL + PostGIS by URL."""
