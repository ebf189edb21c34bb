"""reach: push providers, topics, fan-out on read broadcasts, SMS

Written by hand.
- devices.provider ('fcm' for every existing device: FCM was the only channel).
- notifications: a row is a person's (user_id) or an area's (area_id, a broadcast shown to
  everyone its area covers); notification_reads holds people's read marks on area rows.
- broadcasts.notification_id: the area row (NULL for broadcasts sent before, whose inbox
  rows stay per person).
- device_topics: the topics a device is subscribed to; topic_tasks: topic sends and
  (un)subscriptions to make at the providers, retried like the outbox.
- sms_outbox: SMS to people without the app (urgent broadcasts).

Revision ID: 0017
Revises: 0016
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def _leased():
    return [
        sa.Column('state', sa.String(length=16), server_default='pending', nullable=False),
        sa.Column('due_at', sa.DateTime(timezone=True), server_default=sa.text('now()'),
                  nullable=False),
        sa.Column('attempts', sa.SmallInteger(), server_default='0', nullable=False),
        sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('claim_token', sa.UUID(), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('note', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'),
                  nullable=False),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    ]


def upgrade():
    op.add_column('devices', sa.Column('provider', sa.String(length=16), server_default='fcm',
                                       nullable=False))
    op.create_check_constraint(op.f('ck_devices_provider'), 'devices',
                               "provider ~ '^[a-z][a-z0-9_]{1,15}$'")

    op.alter_column('notifications', 'user_id', existing_type=sa.BigInteger(), nullable=True)
    op.add_column('notifications', sa.Column('area_id', sa.BigInteger(), nullable=True))
    op.create_foreign_key(op.f('fk_notifications_area_id_areas'), 'notifications', 'areas',
                          ['area_id'], ['id'], ondelete='CASCADE')
    op.create_index('ix_notifications_area', 'notifications', ['area_id', 'id'],
                    postgresql_where=sa.text('area_id IS NOT NULL'))
    op.create_check_constraint(op.f('ck_notifications_person_or_area'), 'notifications',
                               '(user_id IS NULL) <> (area_id IS NULL)')
    op.create_table('notification_reads',
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('notification_id', sa.BigInteger(), nullable=False),
    sa.Column('read_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['notification_id'], ['notifications.id'], name=op.f('fk_notification_reads_notification_id_notifications'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_notification_reads_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'notification_id', name=op.f('pk_notification_reads'))
    )
    op.create_index(op.f('ix_notification_reads_notification_id'), 'notification_reads',
                    ['notification_id'], unique=False)

    op.add_column('broadcasts', sa.Column('notification_id', sa.BigInteger(), nullable=True))
    op.create_foreign_key(op.f('fk_broadcasts_notification_id_notifications'), 'broadcasts',
                          'notifications', ['notification_id'], ['id'], ondelete='SET NULL')

    op.create_table('device_topics',
    sa.Column('device_id', sa.BigInteger(), nullable=False),
    sa.Column('topic', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f('fk_device_topics_device_id_devices'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('device_id', 'topic', name=op.f('pk_device_topics'))
    )

    op.create_table('topic_tasks',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('provider', sa.String(length=16), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('topic', sa.String(length=200), nullable=False),
    sa.Column('tokens', postgresql.ARRAY(sa.Text()), server_default='{}', nullable=False),
    sa.Column('notification_id', sa.BigInteger(), nullable=True),
    sa.Column('locale', sa.String(length=16), nullable=True),
    *_leased(),
    sa.CheckConstraint("state IN ('pending', 'sent', 'failed', 'dead')", name=op.f('ck_topic_tasks_state')),
    sa.CheckConstraint("action IN ('send', 'subscribe', 'unsubscribe')", name=op.f('ck_topic_tasks_action')),
    sa.ForeignKeyConstraint(['notification_id'], ['notifications.id'], name=op.f('fk_topic_tasks_notification_id_notifications'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_topic_tasks'))
    )
    op.create_index(op.f('ix_topic_tasks_notification_id'), 'topic_tasks', ['notification_id'],
                    unique=False)
    op.create_index('ix_topic_tasks_due', 'topic_tasks', ['due_at'], unique=False,
                    postgresql_where=sa.text("state = 'pending'"))

    op.create_table('sms_outbox',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('notification_id', sa.BigInteger(), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    *_leased(),
    sa.CheckConstraint("state IN ('pending', 'sent', 'failed', 'dead')", name=op.f('ck_sms_outbox_state')),
    sa.ForeignKeyConstraint(['notification_id'], ['notifications.id'], name=op.f('fk_sms_outbox_notification_id_notifications'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_sms_outbox_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_outbox')),
    sa.UniqueConstraint('notification_id', 'user_id', name='uq_sms_once')
    )
    op.create_index(op.f('ix_sms_outbox_notification_id'), 'sms_outbox', ['notification_id'],
                    unique=False)
    op.create_index('ix_sms_outbox_due', 'sms_outbox', ['due_at'], unique=False,
                    postgresql_where=sa.text("state = 'pending'"))
    op.create_index('ix_sms_outbox_user_sent', 'sms_outbox', ['user_id', 'sent_at'], unique=False)
    op.create_index('ix_sms_outbox_sent', 'sms_outbox', ['sent_at'], unique=False)


def downgrade():
    op.drop_table('sms_outbox')
    op.drop_table('topic_tasks')
    op.drop_table('device_topics')
    op.drop_constraint(op.f('fk_broadcasts_notification_id_notifications'), 'broadcasts',
                       type_='foreignkey')
    op.drop_column('broadcasts', 'notification_id')
    op.drop_table('notification_reads')
    # area rows have no person to fall back to
    op.execute('DELETE FROM notifications WHERE user_id IS NULL')
    op.drop_constraint(op.f('ck_notifications_person_or_area'), 'notifications', type_='check')
    op.drop_index('ix_notifications_area', table_name='notifications')
    op.drop_constraint(op.f('fk_notifications_area_id_areas'), 'notifications',
                       type_='foreignkey')
    op.drop_column('notifications', 'area_id')
    op.alter_column('notifications', 'user_id', existing_type=sa.BigInteger(), nullable=False)
    op.drop_constraint(op.f('ck_devices_provider'), 'devices', type_='check')
    op.drop_column('devices', 'provider')
