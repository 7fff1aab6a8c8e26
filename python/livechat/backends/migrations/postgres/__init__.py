"""PostgreSQL migrations for the MetaStore: ``NNNN_name.sql``, applied in order by ``livechat migrate``.

Rules for a new file: never edit one that has shipped (add the next number instead); every
statement must run inside a transaction (no ``CREATE INDEX CONCURRENTLY``), because all pending
files are applied in one transaction under an advisory lock.
"""
