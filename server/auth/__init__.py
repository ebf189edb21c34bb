"""Accounts, passwords, tokens, roles and permissions, and who the current actor is."""
