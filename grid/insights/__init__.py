"""Insights (研判与预警): trends, hot spots, indicators and early warnings, labour-dispute
risk and leaders' reports.

Layers, bottom to top (no module imports one above it):
- `models.py`: the tables of the context.
- warnings (预警): `indicators.py` (城市运行体征指标: each kind's measure as one SQL statement
  over every area at once, thresholds, the series), `warnings.py` (evaluating an indicator
  and keeping one open warning per indicator and area, the timeline, notices),
  `actions.py` (the warning's life cycle: acknowledge, resolve, dismiss, to-case),
  `reports.py` (leaders' weekly .xlsx 报表).
- `schemas.py`, `views.py`, `wiring.py`.
"""
