"""Looking inside models: summaries (and, later, feature maps and attributions)."""

from cnnlab.inspect.summary import LayerRow, format_summary, group_rows, summary, totals

__all__ = ["LayerRow", "format_summary", "group_rows", "summary", "totals"]
