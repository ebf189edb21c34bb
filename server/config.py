"""Settings from environment variables, with safe local defaults.

Every variable is documented in the README. Secrets have development defaults so that
`make run` works out of the box; production must set them (see `check_production`).
"""

from __future__ import annotations

import base64
import os
from datetime import timedelta


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


# Development-only secrets: fixed so that a restarted dev server can still read its data.
_DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-in-production-0123456789"
_DEV_PII_KEY = base64.b64encode(b"dev-only-pii-key-32-bytes-long!!").decode()
_DEV_BLIND_INDEX_KEY = base64.b64encode(b"dev-only-blind-index-key-32bytes").decode()


class Config:
    """Defaults for running locally; each can be overridden by an environment variable."""

    ENV_NAME = _env("GRID_ENV", "development")
    DATABASE_URL = _env(
        "DATABASE_URL", "postgresql+psycopg2://grid_app:grid_app@127.0.0.1:54320/grid"
    )
    # Migrations run as the owner role; the app role cannot UPDATE/DELETE audit rows.
    MIGRATION_DATABASE_URL = _env("MIGRATION_DATABASE_URL", "") or DATABASE_URL
    DB_POOL_SIZE = _env_int("DB_POOL_SIZE", 5)

    JWT_SECRET_KEY = _env("JWT_SECRET_KEY", _DEV_JWT_SECRET)
    JWT_ACCESS_TOKEN_EXPIRES = timedelta(minutes=_env_int("JWT_ACCESS_MINUTES", 15))
    JWT_REFRESH_TOKEN_EXPIRES = timedelta(days=_env_int("JWT_REFRESH_DAYS", 30))
    JWT_TOKEN_LOCATION = ["headers"]
    # A refresh token presented again within this many seconds of its use (a phone retrying
    # after the answer was lost) gets its successor again instead of ending the session.
    REFRESH_REUSE_GRACE_S = _env_int("REFRESH_REUSE_GRACE_S", 30)
    JWT_ERROR_MESSAGE_KEY = "message"
    # Actors are remembered this long between requests; a change (revocation, roles,
    # memberships) forgets them at once through LISTEN/NOTIFY (server/auth/actor_cache.py).
    # 0: load the actor from the database on every request (e.g. behind PgBouncer).
    ACTOR_CACHE_SECONDS = _env_int("ACTOR_CACHE_SECONDS", 60)

    # Personal data: AES-256-GCM key(s) as "keyid:base64key,..."; the first is used to write.
    PII_KEYS = _env("PII_KEYS", f"k1:{_DEV_PII_KEY}")
    BLIND_INDEX_KEY = _env("BLIND_INDEX_KEY", _DEV_BLIND_INDEX_KEY)

    # argon2id parameters (RFC 9106 second recommended option is heavier; this costs ~100-250 ms).
    ARGON2_TIME_COST = _env_int("ARGON2_TIME_COST", 3)
    ARGON2_MEMORY_KIB = _env_int("ARGON2_MEMORY_KIB", 65536)
    ARGON2_PARALLELISM = _env_int("ARGON2_PARALLELISM", 2)

    # Login protection: per account and per IP, fixed windows kept in PostgreSQL so that
    # every gunicorn worker sees the same counters.
    LOGIN_LIMIT_PER_ACCOUNT = _env_int("LOGIN_LIMIT_PER_ACCOUNT", 10)  # attempts / window
    LOGIN_LIMIT_PER_IP = _env_int("LOGIN_LIMIT_PER_IP", 60)
    LOGIN_LIMIT_WINDOW_S = _env_int("LOGIN_LIMIT_WINDOW_S", 300)
    LOCKOUT_AFTER_FAILURES = _env_int("LOCKOUT_AFTER_FAILURES", 5)
    LOCKOUT_MINUTES = _env_int("LOCKOUT_MINUTES", 15)
    VERIFICATION_CODE_LIMIT_PER_PHONE = _env_int("VERIFICATION_CODE_LIMIT_PER_PHONE", 5)
    # "log" prints codes to the log (development); plug a real SMS sender by dotted path.
    VERIFICATION_SENDER = _env("VERIFICATION_SENDER", "log")

    # Reverse proxies in front of the app (nginx, a load balancer): their X-Forwarded-For
    # is trusted for the client address that rate limits and the audit trail use.
    TRUSTED_PROXIES = _env_int("TRUSTED_PROXIES", 0)
    # Where clients reach this API (https://grid.example.gov.cn, no trailing slash): the base
    # of absolute URLs the API hands out (TileJSON tile URLs, the Open311 discovery
    # document), which never come from the request's Host header. Empty: root-relative URLs.
    PUBLIC_BASE_URL = _env("PUBLIC_BASE_URL", "").strip().rstrip("/")
    # Host names this server answers to (comma-separated; Flask's TRUSTED_HOSTS: any other
    # Host header is a 400). Empty: not checked (a proxy in front checks it).
    TRUSTED_HOSTS = [h.strip() for h in _env("TRUSTED_HOSTS", "").split(",") if h.strip()] or None
    # Browser origins (https://console.example.gov.cn, comma-separated) that may call the
    # whole API with a token (CORS). Reads without a token answer any origin.
    CORS_ORIGINS = tuple(o.strip().rstrip("/") for o in _env("CORS_ORIGINS", "").split(",")
                         if o.strip())
    # Collected points less accurate than this are accepted and flagged for review.
    GPS_REVIEW_ACCURACY_M = float(os.environ.get("GPS_REVIEW_ACCURACY_M", 50))
    # How far ahead of our clock a phone's `captured_at` may be (clock skew); beyond: 422.
    GPS_MAX_FUTURE_S = _env_int("GPS_MAX_FUTURE_S", 600)
    MAX_CONTENT_LENGTH = _env_int("MAX_CONTENT_LENGTH", 16 * 1024 * 1024)
    STORAGE_DIR = _env("STORAGE_DIR", os.path.join(os.getcwd(), "var", "storage"))
    # One photo's limit (413 beyond it); MAX_CONTENT_LENGTH bounds the whole request body.
    PHOTO_MAX_BYTES = _env_int("PHOTO_MAX_BYTES", 10 * 1024 * 1024)
    # Ledger imports (grid/ledgers) run as background jobs; what one file may hold. Checked
    # before anything is parsed: the data rows (an .xlsx's declared sheet size, a CSV's
    # lines), the columns read of a row, and for an .xlsx the sum of its parts' declared
    # uncompressed sizes and the compression ratio of any part over 1 MiB (zip bombs).
    LEDGER_MAX_ROWS = _env_int("LEDGER_MAX_ROWS", 200_000)
    LEDGER_MAX_COLUMNS = _env_int("LEDGER_MAX_COLUMNS", 200)
    LEDGER_MAX_UNCOMPRESSED_BYTES = _env_int("LEDGER_MAX_UNCOMPRESSED_BYTES", 256 * 1024 * 1024)
    LEDGER_MAX_COMPRESSION_RATIO = _env_int("LEDGER_MAX_COMPRESSION_RATIO", 100)
    # Imported area boundaries wider or higher than this (degrees) are refused (422).
    AREA_MAX_EXTENT_DEG = float(os.environ.get("AREA_MAX_EXTENT_DEG", 30))
    # Background jobs (server/jobs.py): a job not heard of for JOB_LEASE_S is taken again by
    # another worker, at most JOB_MAX_ATTEMPTS starts in all.
    JOB_LEASE_S = _env_int("JOB_LEASE_S", 300)
    JOB_MAX_ATTEMPTS = _env_int("JOB_MAX_ATTEMPTS", 2)
    LOG_LEVEL = _env("LOG_LEVEL", "INFO")
    # JSON and text responses at least this long are gzipped for clients that accept it
    # (server/compress.py); 0 turns compression off (e.g. when a proxy in front does it).
    COMPRESS_MIN_BYTES = _env_int("COMPRESS_MIN_BYTES", 1024)
    DEFAULT_TIMEZONE = _env("DEFAULT_TIMEZONE", "Asia/Shanghai")
    # Open311 (GeoReport v2): reads per minute per address without a key, and what the
    # discovery document tells integrators.
    OPEN311_READS_PER_MINUTE = _env_int("OPEN311_READS_PER_MINUTE", 60)
    OPEN311_CONTACT = _env("OPEN311_CONTACT", "网格化社会治理平台管理员")
    OPEN311_KEY_SERVICE = _env("OPEN311_KEY_SERVICE", "api_key: ask the platform's "
                               "administrators (POST /api-clients, kind open311)")
    # The pre-report duplicate lookup (GET /cases/likely-duplicates) and joins by location:
    # per user and window, so that it offers cases to join and is no directory of them.
    CASE_LOOKUP_LIMIT = _env_int("CASE_LOOKUP_LIMIT", 30)
    CASE_LOOKUP_WINDOW_S = _env_int("CASE_LOOKUP_WINDOW_S", 600)
    # 综合评价 weights: 立案数分值, 结案率, 按期处置率, 1−返工率 (cities weigh them differently).
    CASE_SCORE_WEIGHTS = {
        k: float(v) for k, _, v in (item.partition(":") for item in _env(
            "CASE_SCORE_WEIGHTS",
            "accepted:0.1,closure_rate:0.3,on_time_handling_rate:0.3,no_rework:0.3",
        ).split(","))
    }

    # Maps (grid.maps): below TILE_DETAIL_MIN_ZOOM points are aggregated per grid; at most
    # TILE_MAX_FEATURES features per layer and tile; scoped tiles are cached privately for
    # TILE_MAX_AGE_S (the public areas layer five times longer). Area boundaries are
    # public (网格公示) unless MAP_PUBLIC_AREAS=false. MAP_MAX_FEATURES bounds each
    # collection of /areas/{id}/map and map.svg.
    TILE_DETAIL_MIN_ZOOM = _env_int("TILE_DETAIL_MIN_ZOOM", 14)
    TILE_MAX_FEATURES = _env_int("TILE_MAX_FEATURES", 5000)
    TILE_MAX_AGE_S = _env_int("TILE_MAX_AGE_S", 60)
    # The first zoom at which each area level is drawn (levels not named: from the last).
    TILE_AREA_MIN_ZOOM = {
        k: int(v) for k, _, v in (item.partition(":") for item in _env(
            "TILE_AREA_MIN_ZOOM", "city:0,district:0,street:9,community:11,grid:12,"
                                  "micro_grid:15").split(","))
    }
    MAP_PUBLIC_AREAS = _env("MAP_PUBLIC_AREAS", "true").lower() in ("1", "true", "yes")
    MAP_MAX_FEATURES = _env_int("MAP_MAX_FEATURES", 5000)

    # Push notifications (notifications/): without a service-account file the worker fills
    # the inbox and logs what it would push. FCM_ENDPOINT replaces https://fcm.googleapis.com
    # (a proxy, or the local FCM stand-in of the tests and the benchmark).
    FIREBASE_CREDENTIALS = _env("FIREBASE_CREDENTIALS", "")
    FCM_ENDPOINT = _env("FCM_ENDPOINT", "https://fcm.googleapis.com")
    FCM_TIMEOUT_S = float(os.environ.get("FCM_TIMEOUT_S", 10))
    NOTIFY_BATCH_SIZE = _env_int("NOTIFY_BATCH_SIZE", 500)  # rows per claim; ≤ 500 per send_each
    NOTIFY_MAX_ATTEMPTS = _env_int("NOTIFY_MAX_ATTEMPTS", 8)  # then dead-lettered
    NOTIFY_LEASE_S = _env_int("NOTIFY_LEASE_S", 120)  # a claim not recorded by then is retaken
    NOTIFY_BACKOFF_BASE_S = _env_int("NOTIFY_BACKOFF_BASE_S", 10)
    NOTIFY_BACKOFF_MAX_S = _env_int("NOTIFY_BACKOFF_MAX_S", 3600)
    BROADCAST_LIMIT_PER_SENDER = _env_int("BROADCAST_LIMIT_PER_SENDER", 10)
    BROADCAST_LIMIT_WINDOW_S = _env_int("BROADCAST_LIMIT_WINDOW_S", 3600)
    BROADCAST_BATCH_SIZE = _env_int("BROADCAST_BATCH_SIZE", 1000)  # users per fan-out step
    # Webhooks (grid/exchange/delivery.py): CloudEvents to subscribers' URLs, retried with
    # backoff, dead-lettered after WEBHOOK_MAX_ATTEMPTS. WEBHOOK_ALLOWED_HOSTS: hosts allowed
    # over plain http or on private addresses (comma-separated; tests and intranets).
    WEBHOOK_ALLOWED_HOSTS = _env("WEBHOOK_ALLOWED_HOSTS", "")
    WEBHOOK_BATCH_SIZE = _env_int("WEBHOOK_BATCH_SIZE", 200)
    WEBHOOK_LEASE_S = float(os.environ.get("WEBHOOK_LEASE_S", 120))
    WEBHOOK_MAX_ATTEMPTS = _env_int("WEBHOOK_MAX_ATTEMPTS", 10)
    WEBHOOK_BACKOFF_BASE_S = float(os.environ.get("WEBHOOK_BACKOFF_BASE_S", 10))
    WEBHOOK_BACKOFF_MAX_S = float(os.environ.get("WEBHOOK_BACKOFF_MAX_S", 3600))
    WEBHOOK_CONCURRENCY = _env_int("WEBHOOK_CONCURRENCY", 8)
    WEBHOOK_TIMEOUT_S = float(os.environ.get("WEBHOOK_TIMEOUT_S", 10))
    # Break-the-glass grants (grid/exchange/grants.py) and residents' declarations.
    BREAK_GLASS_MINUTES = _env_int("BREAK_GLASS_MINUTES", 60)
    DECLARATION_LIMIT = _env_int("DECLARATION_LIMIT", 10)  # per resident per window
    DECLARATION_WINDOW_S = _env_int("DECLARATION_WINDOW_S", 86400)
    # Huawei Push Kit (notifications/providers/hms.py): off without app id and secret.
    HMS_APP_ID = _env("HMS_APP_ID", "")
    HMS_CLIENT_ID = _env("HMS_CLIENT_ID", "")  # defaults to the app id
    HMS_CLIENT_SECRET = _env("HMS_CLIENT_SECRET", "")
    HMS_TOKEN_URL = _env("HMS_TOKEN_URL", "https://oauth-login.cloud.huawei.com/oauth2/v3/token")
    HMS_PUSH_URL = _env("HMS_PUSH_URL", "https://push-api.cloud.huawei.com")
    HMS_TIMEOUT_S = float(os.environ.get("HMS_TIMEOUT_S", 10))
    HMS_CONCURRENCY = _env_int("HMS_CONCURRENCY", 64)
    # SMS by Aliyun (notifications/providers/sms.py): off without a key and a template id
    # (templates are pre-approved in China; the id is configuration).
    ALIYUN_SMS_ACCESS_KEY_ID = _env("ALIYUN_SMS_ACCESS_KEY_ID", "")
    ALIYUN_SMS_ACCESS_KEY_SECRET = _env("ALIYUN_SMS_ACCESS_KEY_SECRET", "")
    ALIYUN_SMS_SIGN_NAME = _env("ALIYUN_SMS_SIGN_NAME", "")
    ALIYUN_SMS_ENDPOINT = _env("ALIYUN_SMS_ENDPOINT", "https://dysmsapi.aliyuncs.com")
    SMS_BROADCAST_TEMPLATE = _env("SMS_BROADCAST_TEMPLATE", "")
    SMS_RATE_PER_S = float(os.environ.get("SMS_RATE_PER_S", 50))
    SMS_PER_NUMBER_DAILY = _env_int("SMS_PER_NUMBER_DAILY", 3)
    SMS_DAILY_CAP = _env_int("SMS_DAILY_CAP", 500_000)

    # Resident services (便民服务): how far ahead schedules make slots, until when before the
    # start a booking may be cancelled or moved (a service may set its own), and how many
    # no-shows (爽约) within how many days block a resident from booking.
    SERVICE_SLOT_DAYS_AHEAD = _env_int("SERVICE_SLOT_DAYS_AHEAD", 14)
    SERVICE_CANCEL_CUTOFF_MINUTES = _env_int("SERVICE_CANCEL_CUTOFF_MINUTES", 120)
    SERVICE_NO_SHOW_LIMIT = _env_int("SERVICE_NO_SHOW_LIMIT", 3)
    SERVICE_NO_SHOW_WINDOW_DAYS = _env_int("SERVICE_NO_SHOW_WINDOW_DAYS", 30)

    # The demo-data generator run once by `make run` (`flask seed-demo`).
    DEMO_SEEDER = "grid.demo:seed"

    API_TITLE = "Grid governance API (网格化社会治理)"
    API_VERSION = "v1"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/api"
    OPENAPI_JSON_PATH = "openapi.json"
    OPENAPI_SWAGGER_UI_PATH = "docs"
    # Served from the swagger-ui-bundle PyPI package by server.app: no CDN at run time.
    OPENAPI_SWAGGER_UI_URL = "/api/docs/assets/"
    # Security schemes, error responses and the Point component: server.api.init_api.


def load_config(overrides: dict | None = None) -> dict:
    """The configuration as a dict: class defaults, then explicit overrides (tests)."""
    values = {k: getattr(Config, k) for k in dir(Config) if k.isupper()}
    values.update(overrides or {})
    return values


def check_production(config: dict) -> list[str]:
    """Problems that must stop a production start (development secrets left in place)."""
    problems = []
    if config["ENV_NAME"] == "production":
        if config["JWT_SECRET_KEY"] == _DEV_JWT_SECRET:
            problems.append("JWT_SECRET_KEY is the development default")
        if _DEV_PII_KEY in config["PII_KEYS"]:
            problems.append("PII_KEYS contains the development key")
        if config["BLIND_INDEX_KEY"] == _DEV_BLIND_INDEX_KEY:
            problems.append("BLIND_INDEX_KEY is the development default")
        if config["VERIFICATION_SENDER"] == "log":
            problems.append("VERIFICATION_SENDER=log would write registration codes to the log")
    return problems

