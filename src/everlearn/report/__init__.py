"""Reports of run directories: a self-contained HTML page plus PNG figures."""

from everlearn.report.html import write_report

__all__ = ["write_report"]
