"""Open311 keeps no tables of its own: keys are server.apiclients' ApiClient (kind
"open311"), requests are cases of channel "open311" whose external_ref is
"<key_id>:<client_request_id>" (idempotency per client)."""
