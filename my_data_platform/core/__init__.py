"""The pure core: plain Python, no Dagster imports, testable on its own."""
