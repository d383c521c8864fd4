"""The built-in handlers now live in the library, as ``streamkit.handlers``.

These modules are kept so that ``from handlers.audit import ...`` in code written
against a checkout of this repository goes on working; new code imports
``streamkit.handlers.audit``, ``streamkit.handlers.s3_sink`` and
``streamkit.handlers.welcome``.
"""
