"""my_data_platform: an ML data platform built as a Dagster asset graph."""

__version__ = "0.1.0"
