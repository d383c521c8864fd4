"""Built-in handlers, each a ``Router`` an App includes.

- ``streamkit.handlers.welcome``: the welcome e-mail (INSERT on a users table -> real SMTP).
- ``streamkit.handlers.audit``: the tamper-evident audit trail (``streamkit audit verify|show``).

- ``streamkit.handlers.s3_sink``: a table's changes to S3 as Parquet or Avro, by date.

Replication (global tables) is not built yet. The CLI's ``audit`` commands and the
demo import this package; it uses only streamkit's public API.
"""
