"""Webhooks: delivery events/s of one worker vs a bare sender (no DB), receiver ceiling, enqueue.

Issue 19 target: one worker (grid/exchange/delivery.py: claim, signed POSTs, record) reaches
≥ 0.5 of a bare sender that posts the same signed bodies with the same HTTP library
(httpx), pooling and concurrency, but no database: what the outbox, the claims and the
bookkeeping cost.

1. A local receiver in a process of its own (http.server, ThreadingHTTPServer, HTTP/1.1
   keep-alive, TCP_NODELAY, answers 200 at once). Its ceiling: a minimal asyncio client
   (keep-alive, one request in flight per connection, bytes built before the clock
   starts) at RECEIVER_CONNS.
2. In this process, the app (create_app with the server's settings): a system client and
   its subscription (services, as an admin), then EVENTS outbox rows for it through the
   owner role (INSERT … SELECT) with a real case.transitioned envelope of a demo case as
   body and an ordering key per case (EVENTS_PER_CASE events each, interleaved).
3. Worker: `delivery.deliver` (what `flask worker`'s deliver_webhooks task runs), default
   settings (claims of 200, 8 in flight), until no row is pending: events/s.
4. Bare sender: the same bodies, signed per request, through the same HttpSender (httpx
   client, pool of 8, 8 threads) in batches of 200, no database: events/s.
5. Enqueue cost: a case transition (`accept` of a demo case by its street's dispatcher,
   rolled back) with the action engine's listeners wired and one matching subscription, vs
   the same with the listeners removed, ENQUEUE_RUNS each, interleaved: p50/p99 and the
   added ms.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import resource
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import sqlalchemy as sa

from bench.harness import Context
from bench.stats import summary_ms

EVENTS = 20_000
EVENTS_PER_CASE = 5
RECEIVER_CONNS = (8, 32)
RECEIVER_REQUESTS = 10_000
ENQUEUE_RUNS = 300
TARGET_RATIO = 0.5


# --- the receiver (a process of its own: `python -m bench.benchmarks.webhooks receive`) -----


class _Receive(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes: without TCP_NODELAY, Nagle and the client's
    # delayed ACK hold every answer ~40 ms
    disable_nagle_algorithm = True

    def do_POST(self):  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def serve() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receive)
    server.daemon_threads = True
    print(f"READY {server.server_address[1]}", flush=True)
    server.serve_forever()


def _start_receiver(ctx: Context) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "bench.benchmarks.webhooks", "receive"],
                            cwd=ctx.root, stdout=subprocess.PIPE, text=True)
    ready = proc.stdout.readline().split()
    if not ready or ready[0] != "READY":
        proc.kill()
        raise RuntimeError(f"the receiver did not start: {ready}")
    return proc, int(ready[1])


def _receiver_ceiling(port: int, connections: int, body: bytes) -> dict:
    request = (f"POST /hook HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               f"Content-Type: application/cloudevents+json; charset=utf-8\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    async def one(n: int, ok: list[int]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(n):
            writer.write(request)
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            ok[0] += b" 200 " in status
        writer.close()

    async def main(total: int) -> tuple[int, float]:
        ok = [0]
        t0 = time.perf_counter()
        await asyncio.gather(*(one(total // connections, ok) for _ in range(connections)))
        return ok[0], time.perf_counter() - t0

    asyncio.run(main(connections * 20))
    ok, elapsed = asyncio.run(main(RECEIVER_REQUESTS))
    return {"client": "asyncio", "connections": connections, "ok": ok,
            "events_per_s": round(ok / elapsed)}


# --- the app side ----------------------------------------------------------------------------


def _app(ctx: Context):
    from server.app import create_app
    from server.config import Config

    overrides = {k: v for k, v in ctx.env.items()
                 if k.isupper() and isinstance(getattr(Config, k, None), str)}
    return create_app(overrides | {"LOG_LEVEL": "WARNING"})


def _subscribe(s, port: int) -> tuple[int, str]:
    from grid.exchange import subscriptions
    from server import apiclients
    from server.auth.models import User
    from server.jobs import actor_of

    admin = actor_of(s, s.scalar(sa.select(User.id).where(User.username == "admin")))
    client, _ = apiclients.create_client(s, admin, {"name": "bench system", "kind": "system"})
    sub, secret = subscriptions.create_subscription(
        s, admin, {"client_id": client.id, "url": f"http://127.0.0.1:{port}/hook",
                   "event_types": ["case.transitioned"]},
        subscriptions.UrlRules(frozenset({"127.0.0.1"})))
    s.commit()
    return sub.id, secret


def _sample_body(s) -> str:
    from grid.cases.models import Case
    from grid.exchange import events

    case = s.scalars(sa.select(Case).where(Case.state == "accepted").limit(1)).one()
    event = events._case_event(s, case, "case.transitioned", {
        "action": "accept", "action_label": "立案", "from_state": "reported",
        "to_state": "accepted", "note": None})
    return events.body_of(event, event.data)


def _load(ctx: Context, sub_id: int, body: str) -> None:
    owner = ctx.owner_engine()
    with owner.begin() as conn:
        conn.execute(sa.text("""
            INSERT INTO webhook_deliveries (subscription_id, event_id, event_type, subject,
                                            ordering_key, body)
            SELECT :sub, gen_random_uuid(), 'case.transitioned', 'cases/' || (g % :cases),
                   'case:' || (g % :cases), :body
            FROM generate_series(1, :n) g"""),
            {"sub": sub_id, "n": EVENTS, "cases": EVENTS // EVENTS_PER_CASE, "body": body})
    with owner.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE webhook_deliveries"))
    owner.dispose()


def _worker(s) -> dict:
    from grid.exchange import delivery

    settings = delivery.WebhookSettings.from_config({})
    sender = delivery.HttpSender(settings.concurrency, settings.timeout_s)
    wide = dataclasses.replace(settings.delivery, budget_s=3600.0)
    t0 = time.perf_counter()
    counts = delivery.deliver(s, sender, wide)
    elapsed = time.perf_counter() - t0
    sender.close()
    left = s.scalar(sa.text("SELECT count(*) FROM webhook_deliveries WHERE state <> 'sent'"))
    return {"path": "worker (claim, sign, POST, record)", "events": counts.get("sent", 0),
            "not_sent": left, "seconds": round(elapsed, 2),
            "events_per_s": round(counts.get("sent", 0) / elapsed),
            "batch": settings.delivery.batch_size, "concurrency": settings.concurrency}


def _bare(port: int, secret: str, body: str) -> dict:
    import uuid

    from grid.exchange import delivery

    sender = delivery.HttpSender(8, 10.0)
    url, raw = f"http://127.0.0.1:{port}/hook", body.encode()
    ids = [str(uuid.uuid4()) for _ in range(EVENTS)]
    ok, t0 = 0, time.perf_counter()
    for start in range(0, EVENTS, 200):
        batch = [(url, raw, delivery.signature_headers(secret, i, raw))
                 for i in ids[start:start + 200]]
        ok += sum(o.status == 200 for o in sender.post_all(batch))
    elapsed = time.perf_counter() - t0
    sender.close()
    return {"path": "bare sender (same httpx pool, 8 in flight, no DB)", "events": ok,
            "seconds": round(elapsed, 2), "events_per_s": round(ok / elapsed)}


def _enqueue_cost(s, sub_id: int) -> dict:
    from grid.cases import actions
    from grid.cases.models import Case
    from server import actions as engine
    from server.jobs import actor_of

    # a reported case and a dispatcher of its street (立案 is theirs)
    case_id, user_id = s.execute(sa.text("""
        SELECT c.id, m.user_id FROM cases c JOIN areas g ON g.id = c.area_id
        JOIN area_memberships m ON m.role = 'street_dispatcher'
        JOIN areas a ON a.id = m.area_id
        WHERE c.state = 'reported' AND g.path LIKE a.path || '%'
        ORDER BY c.id LIMIT 1""")).one()
    wired = list(engine.listeners)
    timings: dict[str, list[float]] = {"with": [], "without": []}
    for i in range(ENQUEUE_RUNS * 2 + 20):
        label = "with" if i % 2 == 0 else "without"
        engine.listeners[:] = wired if label == "with" else []
        actor = actor_of(s, user_id)
        version = s.scalar(sa.select(Case.version).where(Case.id == case_id))
        t0 = time.perf_counter()
        actions.act(s, actor, case_id, "accept", {}, version)
        s.flush()
        ms = (time.perf_counter() - t0) * 1000
        s.rollback()
        if i >= 20:  # warm-up
            timings[label].append(ms)
    engine.listeners[:] = wired
    with_, without = summary_ms(timings["with"]), summary_ms(timings["without"])
    return {"transition_ms_with_event": with_, "transition_ms_without": without,
            "added_ms_p50": round(with_["p50"] - without["p50"], 3)}


def run(ctx: Context) -> dict:
    from server import db

    receiver, port = _start_receiver(ctx)
    try:
        app = _app(ctx)
        with app.app_context():
            s = db.session()
            sub_id, secret = _subscribe(s, port)
            body = _sample_body(s)
            s.commit()
            ceilings = [_receiver_ceiling(port, c, body.encode()) for c in RECEIVER_CONNS]
            print(f"  {ceilings}", flush=True)
            _load(ctx, sub_id, body)
            worker = _worker(s)
            print(f"  {worker}", flush=True)
            bare = _bare(port, secret, body)
            print(f"  {bare}", flush=True)
            enqueue = _enqueue_cost(s, sub_id)
            s.execute(sa.text("DELETE FROM webhook_subscriptions WHERE id = :id"),
                      {"id": sub_id})
            s.commit()
            db.session.remove()
    finally:
        receiver.kill()
        receiver.wait()
    ratio = worker["events_per_s"] / bare["events_per_s"]
    rows = [{**worker, "vs_bare": round(ratio, 2)}, bare,
            *({"path": f"receiver ceiling ({c['connections']} conns)", **c} for c in ceilings),
            {"path": "enqueue: added to a case transition (p50 ms)",
             "added_ms": enqueue["added_ms_p50"],
             "with_p50_ms": enqueue["transition_ms_with_event"]["p50"],
             "without_p50_ms": enqueue["transition_ms_without"]["p50"]}]
    for row in rows:
        print("  " + json.dumps(row, ensure_ascii=False), flush=True)
    return {"rows": rows, "ratio": round(ratio, 3), "target": TARGET_RATIO,
            "body_bytes": len(body.encode()), "events": EVENTS, "enqueue": enqueue,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


if __name__ == "__main__" and sys.argv[1:] == ["receive"]:
    serve()
