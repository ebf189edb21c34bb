"""Notifications: device tokens, the in-app inbox, the outbox and its FCM sender."""
