"""The handler runtime: decorators, event-source-mapping semantics, workers, DLQ, windows.

Handlers are declared on an :class:`~streamkit.App` (or a :class:`Router` it
includes) and run by ``app.running()``, ``app.run()`` or ``streamkit run``. See
``docs/design/runtime.md`` for how it works and ``docs/guides/handlers.md`` for
how to use it.
"""

from streamkit._names import dlq_topic
from streamkit.runtime._batch import Batch, BatchResult, Context, Window
from streamkit.runtime._delivery import PartialBatchFailure, RecordExpired
from streamkit.runtime._dlq import DeadLetter
from streamkit.runtime._registry import HandlerSpec, Router
from streamkit.runtime._worker import group_name

__all__ = (
    "Batch",
    "BatchResult",
    "Context",
    "DeadLetter",
    "HandlerSpec",
    "PartialBatchFailure",
    "RecordExpired",
    "Router",
    "Window",
    "dlq_topic",
    "group_name",
)
