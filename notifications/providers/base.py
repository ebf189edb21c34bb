"""The interface every push channel (推送通道) implements, and the router the worker sends
through.

A provider takes pushes and returns one `Outcome` per push, in order, and never raises for
a failed push; the worker turns outcomes into outbox states:

- ok: the provider accepted it;
- disable: the token is gone (uninstalled, another app's): the device is disabled and
  leaves its topics;
- reject: the provider refused the message itself: not retried;
- retry: rate limited, 5xx, timeouts, no connection, our credentials failing: retried
  later with backoff, after `retry_after_s` when the provider said so.

Topics: `send_topic` sends one message to every device subscribed to a topic;
`subscribe`/`unsubscribe` add or remove tokens (≤ `max_tokens` a call) and return one
outcome per token. Both are idempotent at the providers, so a retried task is harmless.

A new channel (Xiaomi 小米, OPPO, vivo, Honor 荣耀) is a module with a class that has these
methods, a key in models.PROVIDERS and a line in providers/__init__.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Push:
    """One message to one device (or, with `topic`, to every device on a topic)."""

    token: str
    platform: str  # android | ios | web
    title: str
    body: str
    data: dict[str, str] = field(default_factory=dict)
    collapse_key: str | None = None
    urgent: bool = False
    provider: str = "fcm"


@dataclass(frozen=True)
class Outcome:
    status: str  # ok | disable | reject | retry
    error: str | None = None
    retry_after_s: float | None = None
    note: str | None = None  # what happened without an error (a provider that is off)


OK = Outcome("ok")


class Provider(Protocol):
    name: str
    # Written on rows this provider completes (None for a real push).
    note: str | None
    max_tokens: int  # per (un)subscribe call

    def send(self, pushes: list[Push]) -> list[Outcome]: ...

    def send_topic(self, topic: str, push: Push) -> Outcome: ...

    def subscribe(self, topic: str, tokens: list[str]) -> list[Outcome]: ...

    def unsubscribe(self, topic: str, tokens: list[str]) -> list[Outcome]: ...


class OffProvider:
    """A provider without credentials: its pushes go to the inbox only (logged), its topic
    tasks are settled without a request."""

    max_tokens = 1000

    def __init__(self, name: str, why: str) -> None:
        self.name = name
        self.note = f"{name} off ({why}): inbox only"
        self._outcome = Outcome("ok", note=self.note)

    def send(self, pushes: list[Push]) -> list[Outcome]:
        return [self._outcome] * len(pushes)

    def send_topic(self, topic: str, push: Push) -> Outcome:
        return self._outcome

    def subscribe(self, topic: str, tokens: list[str]) -> list[Outcome]:
        return [self._outcome] * len(tokens)

    unsubscribe = subscribe


class Router:
    """The worker's sender: each push goes to its device's provider; a provider not
    configured (or unknown) takes it as OffProvider does."""

    note = None

    def __init__(self, providers: dict[str, Provider]) -> None:
        self.providers = providers

    def provider(self, name: str) -> Provider:
        found = self.providers.get(name)
        return found if found is not None else OffProvider(name, "not configured")

    def send(self, pushes: list[Push]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(pushes)
        by_provider: dict[str, list[int]] = {}
        for i, p in enumerate(pushes):
            by_provider.setdefault(p.provider, []).append(i)
        for name, indexes in by_provider.items():
            sent = self.provider(name).send([pushes[i] for i in indexes])
            for i, outcome in zip(indexes, sent, strict=True):
                outcomes[i] = outcome
        return outcomes  # type: ignore[return-value]


def push_data(notification_id: int, kind: str, data: dict, collapse_key: str | None
              ) -> dict[str, str]:
    """The data of a push (string values, as FCM wants): which inbox row to open, its kind,
    thread and link; the app fetches the rest from the inbox."""
    out = {"notification_id": str(notification_id), "kind": kind}
    if collapse_key:
        out["collapse_key"] = collapse_key
    link = data.get("link")
    if isinstance(link, str) and len(link) <= 500:
        out["link"] = link
    return out
