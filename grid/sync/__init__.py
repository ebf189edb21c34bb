"""Offline sync for phones: `GET /sync/pull` (what changed in the actor's grids since a
cursor, tombstones included) and `POST /sync/push` (a batch of creates, updates and ends,
each with its own result). No tables of its own: it reads the register's change stamps
(change_seq, change_xid) and tombstones, and writes through the register's service.

Modules, bottom to top (a module imports only those before it): record_types (the register
types sync sends: model, masked schema) · cursor (同步游标: snapshots, scope hash) · schemas ·
pages (a page's JSON built by PostgreSQL) · pull (拉取: the changes since a cursor) · push
(推送: a batch of operations, a result each) · views."""
