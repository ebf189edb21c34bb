"""Push channels and SMS, built from settings: FCM (default), Huawei Push Kit, Aliyun SMS.

A provider whose credentials are not set is off: its pushes go to the inbox only. The
settings are read from the app's config, or the environment when the config lacks them
(server/config.py does not list them yet): see README "Providers, credentials and topics".
"""

from __future__ import annotations

import os
from typing import Any

from notifications.providers.base import OffProvider, Provider, Router
from notifications.providers.fcm import FcmSender, LogSender
from notifications.providers.hms import HmsProvider
from notifications.providers.sms import AliyunSms, LogSms, SmsProvider

_built: dict[tuple, Any] = {}


def setting(config: Any, key: str, default: Any = None) -> Any:
    """`key` from the config, else from the environment (typed like `default`)."""
    if key in config and config[key] not in (None, ""):
        return config[key]
    raw = os.environ.get(key)
    if raw is None or raw == "":
        return default
    return type(default)(raw) if isinstance(default, int | float) else raw


def _fcm(config: Any) -> Provider:
    path = setting(config, "FIREBASE_CREDENTIALS", "")
    if not path:
        return LogSender()
    return FcmSender.from_file(
        path, endpoint=setting(config, "FCM_ENDPOINT", "https://fcm.googleapis.com"),
        timeout_s=float(setting(config, "FCM_TIMEOUT_S", 10.0)),
        batch_size=int(setting(config, "NOTIFY_BATCH_SIZE", 500)))


def _hms(config: Any) -> Provider:
    app_id, secret = setting(config, "HMS_APP_ID", ""), setting(config, "HMS_CLIENT_SECRET", "")
    if not (app_id and secret):
        return OffProvider("hms", "HMS_APP_ID/HMS_CLIENT_SECRET not set")
    return HmsProvider(
        app_id, secret, client_id=setting(config, "HMS_CLIENT_ID", "") or None,
        token_url=setting(config, "HMS_TOKEN_URL", "https://oauth-login.cloud.huawei.com/"
                                                   "oauth2/v3/token"),
        push_url=setting(config, "HMS_PUSH_URL", "https://push-api.cloud.huawei.com"),
        timeout_s=float(setting(config, "HMS_TIMEOUT_S", 10.0)),
        concurrency=int(setting(config, "HMS_CONCURRENCY", 64)))


# name → builder; Xiaomi/OPPO/vivo/Honor add theirs here (and a key in models.PROVIDERS).
BUILDERS = {"fcm": _fcm, "hms": _hms}
_KEYS = ("FIREBASE_CREDENTIALS", "FCM_ENDPOINT", "FCM_TIMEOUT_S", "NOTIFY_BATCH_SIZE",
         "HMS_APP_ID", "HMS_CLIENT_ID", "HMS_CLIENT_SECRET", "HMS_TOKEN_URL", "HMS_PUSH_URL",
         "HMS_TIMEOUT_S", "HMS_CONCURRENCY")


def router_for(config: Any) -> Router:
    """Every provider, built once per process and configuration (connections and OAuth
    tokens are reused across the worker's batches)."""
    key = ("router",) + tuple(str(setting(config, k, "")) for k in _KEYS)
    if key not in _built:
        _built[key] = Router({name: build(config) for name, build in BUILDERS.items()})
    return _built[key]


def sms_for(config: Any) -> SmsProvider:
    keys = ("ALIYUN_SMS_ACCESS_KEY_ID", "ALIYUN_SMS_ACCESS_KEY_SECRET", "ALIYUN_SMS_SIGN_NAME",
            "ALIYUN_SMS_ENDPOINT", "SMS_RATE_PER_S")
    key = ("sms",) + tuple(str(setting(config, k, "")) for k in keys)
    if key not in _built:
        key_id = setting(config, "ALIYUN_SMS_ACCESS_KEY_ID", "")
        secret = setting(config, "ALIYUN_SMS_ACCESS_KEY_SECRET", "")
        _built[key] = AliyunSms(
            key_id, secret, setting(config, "ALIYUN_SMS_SIGN_NAME", ""),
            endpoint=setting(config, "ALIYUN_SMS_ENDPOINT", "https://dysmsapi.aliyuncs.com"),
            rate_per_s=float(setting(config, "SMS_RATE_PER_S", 50.0)),
        ) if key_id and secret else LogSms()
    return _built[key]


def sms_configured(config: Any) -> bool:
    """Urgent broadcasts go by SMS only when a provider and a template are configured."""
    return bool(setting(config, "ALIYUN_SMS_ACCESS_KEY_ID", "")
                and setting(config, "SMS_BROADCAST_TEMPLATE", ""))


__all__ = ["BUILDERS", "Router", "router_for", "setting", "sms_configured", "sms_for"]
