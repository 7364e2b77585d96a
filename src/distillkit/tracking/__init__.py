"""Tracking: run records in SQLite (``runs/runs.db``) and a callback that feeds them during training."""

from distillkit.tracking.callback import RecordsCallback
from distillkit.tracking.records import RunRecords, code_version

__all__ = ["RecordsCallback", "RunRecords", "code_version"]
