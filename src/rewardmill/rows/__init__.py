"""Rows: their shapes and validation, the readers of every input format, and the row layer that scores them."""
