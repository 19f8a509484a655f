"""The Jinja2 environment that renders the report pages from `templates/*.html.j2`.

One environment for the run report (`html`) and the sweep comparison (`comparison_writer`):
HTML autoescaping on, the templates loaded from this package, and the two filters the pages
share — `fmt` (a number to three decimals, a dash where there is none) and `date` (an ISO
timestamp as `2025-01-02 03:04 UTC`).
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

import jinja2

from everlearn.report.figures import fmt

__all__ = ["format_date", "render"]


def format_date(created: str | None) -> str:
    """An ISO timestamp as `2025-01-02 03:04 UTC`; what is not one is shown as it is."""
    if not created:
        return "date unknown"
    try:
        return datetime.fromisoformat(created).strftime("%Y-%m-%d %H:%M %Z").strip()
    except ValueError:
        return created


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("everlearn.report", "templates"),
        autoescape=jinja2.select_autoescape(["html.j2", "html"]),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True)
    env.filters["fmt"] = fmt
    env.filters["date"] = format_date
    return env


def render(template: str, **context: Any) -> str:
    """The page `templates/TEMPLATE` rendered with `context`."""
    return _environment().get_template(template).render(**context)
