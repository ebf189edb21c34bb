"""Insights (研判与预警): trends, hot spots, indicators and early warnings, labour-dispute
risk and leaders' reports.

Modules:
- `models.py`: the tables of the context.
- hot spots and labour risk (热点, 劳资纠纷预警): `hotspots.py`, `hotspot_runs.py`,
  `on_the_map.py`, `labour.py`, `risk_report.py`.
- warnings (预警): `indicators.py` (城市运行体征指标: each kind's measure as one SQL statement
  over every area at once, thresholds, the series), `warnings.py` (evaluating an indicator
  and keeping one open warning per indicator and area, the timeline, notices),
  `actions.py` (the warning's life cycle: acknowledge, resolve, dismiss, to-case),
  `reports.py` (leaders' weekly .xlsx 报表).
- `schemas.py`, `views.py`, `wiring.py`.
"""
