"""The platform: app factory, database, API plumbing, accounts, audit. Nothing domain-specific."""
