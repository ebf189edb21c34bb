"""Insights (研判与预警): hot spots, labour-dispute risk, indicators and warnings, reports."""
