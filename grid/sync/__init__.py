"""Offline sync for phones: `GET /sync/pull` (what changed in the actor's grids since a
cursor, tombstones included) and `POST /sync/push` (a batch of creates, updates and ends,
each with its own result). No tables of its own: it reads the register's change stamps
(change_seq, change_xid) and tombstones, and writes through the register's service."""
