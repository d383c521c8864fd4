"""Built-in handlers, each a ``Router`` an App includes.

- ``handlers.welcome``: the welcome e-mail (INSERT on a users table -> real SMTP).
- ``handlers.audit``: the tamper-evident audit trail (``streamkit audit verify|show``).

Still to come: replication, the S3/ETL sink. Only the CLI's ``audit`` commands and the
demo import this package.
"""
