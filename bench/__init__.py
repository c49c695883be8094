"""Benchmark suite: `python -m bench` runs every bench module present."""
