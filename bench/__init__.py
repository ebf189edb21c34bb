"""Benchmarks: `make bench` (see bench/README.md). Not part of the test suite.

bench.run      the runner: database, gunicorn, selected benchmarks, results, summary
bench.harness  Context: what a benchmark function gets (measure, baseline, tokens, SQL timer)
bench.load     measure(): HTTP load with locust, latency percentiles, RSS and CPU
bench.benchmarks.<name>  one module per benchmark, each with run(ctx) -> dict
"""
