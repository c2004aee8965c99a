"""Benchmarks behind docs/PERFORMANCE.md. Each script runs on its own: ``.venv/bin/python benchmarks/<name>.py``."""
