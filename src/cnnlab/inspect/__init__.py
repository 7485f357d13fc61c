"""Looking inside models: summaries (and, later, feature maps and attributions)."""

from cnnlab.inspect.summary import LayerRow, summary

__all__ = ["LayerRow", "summary"]
