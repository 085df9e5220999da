"""Showing results: the terminal table, the JSON report and the Markdown step summary.

Every figure is read from the result model; nothing is computed here. The table (`table`) and the
sections below it (`sections`) are shared by the terminal (`terminal`) and the step summary
(`step_summary`); the JSON file (`json_file`) is the result model dumped.
"""

from .json_file import Report, write_json
from .sections import break_even_lines, failure_lines
from .step_summary import markdown
from .terminal import terminal_lines

__all__ = ["Report", "break_even_lines", "failure_lines", "markdown", "terminal_lines", "write_json"]
