"""Reports: a self-contained HTML page and a Markdown summary of a comparison run."""

from distillkit.reporting.report import write_report

__all__ = ["write_report"]
