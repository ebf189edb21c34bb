"""Ledgers (台账): importing and exporting the register as the spreadsheets communities keep."""
