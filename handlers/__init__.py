"""Built-in handlers (audit trail, replication, S3/ETL sink, welcome e-mail).

They arrive with the handler runtime; nothing in ``streamkit`` imports this package.
"""
