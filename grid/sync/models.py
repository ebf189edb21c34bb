"""No tables: sync reads the register's change stamps and tombstones (grid.registry)."""
