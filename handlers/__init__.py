"""Built-in handlers, each a ``Router`` an App includes.

- ``handlers.welcome``: the welcome e-mail (INSERT on a users table -> real SMTP).

Still to come: the audit trail, replication, the S3/ETL sink. Nothing in ``streamkit``
imports this package.
"""
