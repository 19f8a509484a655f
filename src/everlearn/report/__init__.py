"""Reports: a self-contained HTML page plus PNG figures for a run directory, and the
comparison of a sweep directory's cells (JSON, Markdown and HTML)."""

from everlearn.report.comparison_writer import write_comparison
from everlearn.report.html import write_report

__all__ = ["write_comparison", "write_report"]
