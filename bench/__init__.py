"""Parley's benchmarks: `uv run python -m bench` starts a fake upstream, a minimal relay and Parley
on loopback, measures each side by side, and writes BENCHMARKS.md (see that file)."""
