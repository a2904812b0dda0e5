"""Data sources for training: each file holds one source."""
