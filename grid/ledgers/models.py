"""No tables of its own: a ledger import writes the register's tables (grid.registry.models)
and keeps its working set (the keys seen so far in the file) in a temporary table of the
import's transaction (see service.py)."""
