"""actor_changed: tell the app's actor cache when an actor changes (server/auth/actor_cache.py)

Written by hand. One trigger function, `notify_actor_changed()`, sends
`NOTIFY actor_changed, '<user id>'` (the column named by the trigger's argument, from the
old row and the new) or `'*'` for everyone. NOTIFY is transactional: it is sent when the
change commits, never for a rollback, and PostgreSQL folds repeats in one transaction.
Triggers on every table the actor statement reads (tests/server/test_actor_cache.py checks
that none is missing): the account (active or not), its sessions (revoked), its roles, its
area memberships and departments, and the areas' paths (a moved area changes everyone's
scope below it).

Revision ID: 0016
Revises: 0015
"""

from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

# (table, the column holding the user id or '*', the events)
WATCHED = (
    ("users", "id", "UPDATE OF is_active OR DELETE"),
    ("auth_sessions", "user_id", "UPDATE OF revoked_at, user_id OR DELETE"),
    ("user_roles", "user_id", "INSERT OR UPDATE OR DELETE"),
    ("area_memberships", "user_id", "INSERT OR UPDATE OR DELETE"),
    ("department_members", "user_id", "INSERT OR UPDATE OR DELETE"),
    ("areas", "*", "UPDATE OF path OR DELETE"),
)


def upgrade():
    op.execute("""
        CREATE FUNCTION notify_actor_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_ARGV[0] = '*' THEN
                PERFORM pg_notify('actor_changed', '*');
                RETURN NULL;
            END IF;
            IF TG_OP IN ('UPDATE', 'DELETE') THEN
                PERFORM pg_notify('actor_changed', to_jsonb(OLD) ->> TG_ARGV[0]);
            END IF;
            IF TG_OP IN ('INSERT', 'UPDATE') THEN
                PERFORM pg_notify('actor_changed', to_jsonb(NEW) ->> TG_ARGV[0]);
            END IF;
            RETURN NULL;
        END $$
    """)
    for table, column, events in WATCHED:
        op.execute(f"CREATE TRIGGER {table}_actor_changed AFTER {events} ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION notify_actor_changed('{column}')")
        op.execute(f"CREATE TRIGGER {table}_actor_truncated AFTER TRUNCATE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION notify_actor_changed('*')")


def downgrade():
    for table, _column, _events in WATCHED:
        op.execute(f"DROP TRIGGER {table}_actor_truncated ON {table}")
        op.execute(f"DROP TRIGGER {table}_actor_changed ON {table}")
    op.execute("DROP FUNCTION notify_actor_changed()")
