"""The platform: app factory, database, API plumbing, accounts and audit. Nothing domain-specific."""
