"""Leaderboards: result files (+ published numbers) -> per-benchmark tables, a summary table, markdown, CSV, chart.

``entries`` turns results and reported rows into rows, ``tables`` builds the tables from what each benchmark
declares, ``render`` writes them out.
"""

from cirbench.errors import LeaderboardError
from cirbench.leaderboard.chart import write_chart
from cirbench.leaderboard.durations import format_duration, format_train_time
from cirbench.leaderboard.entries import (
    Entry,
    collect_entries,
    entry_from_result,
    load_reported,
    parse_reported_time,
    protocol_deviations,
)
from cirbench.leaderboard.render import (
    DECIMALS,
    DELTA_NOTE,
    best_mask,
    csv_frame,
    interval_text,
    markdown_table,
    render_csv,
    render_markdown,
)
from cirbench.leaderboard.summary import summary_table
from cirbench.leaderboard.tables import (
    HIDDEN_COLUMNS,
    META_COLUMNS,
    MISSING,
    benchmark_columns,
    benchmark_table,
    benchmarks_in,
    entry_values,
    not_compared,
    summary_column,
)

__all__ = [
    "DECIMALS",
    "DELTA_NOTE",
    "HIDDEN_COLUMNS",
    "META_COLUMNS",
    "MISSING",
    "Entry",
    "LeaderboardError",
    "benchmark_columns",
    "benchmark_table",
    "benchmarks_in",
    "best_mask",
    "collect_entries",
    "csv_frame",
    "entry_from_result",
    "entry_values",
    "format_duration",
    "format_train_time",
    "interval_text",
    "load_reported",
    "markdown_table",
    "not_compared",
    "parse_reported_time",
    "protocol_deviations",
    "render_csv",
    "render_markdown",
    "summary_column",
    "summary_table",
    "write_chart",
]
