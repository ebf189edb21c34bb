"""The governance domain (网格化社会治理), one package per bounded context."""
