"""Capture: the relay that moves committed change records from storage to the log,
and reading a table's change stream back."""

from streamkit.capture._relay import Relay, RelayStatus, table_topic

__all__ = ("Relay", "RelayStatus", "table_topic")
