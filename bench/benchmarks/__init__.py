"""One module per benchmark: a docstring and `run(ctx: bench.harness.Context) -> dict`.

Modules are found by name (files starting with `_` are skipped); `healthz` runs first.
"""
