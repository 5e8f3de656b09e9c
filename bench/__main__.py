"""`uv run python -m bench [--quick] [--output BENCHMARKS.md]`."""

from bench.run import main

main()
