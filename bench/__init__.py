"""vnet's benchmark: run ``python3 -m bench`` (see bench/run.py and docs/performance.md)."""
