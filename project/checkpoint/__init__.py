"""Checkpoints in three homes: `files` (atomic writes), `format` (what a checkpoint holds,
safe loading and validation) and `policy` (what to keep and when to write)."""
