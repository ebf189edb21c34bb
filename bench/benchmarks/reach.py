"""Reach: a district's emergency broadcast via FCM, Push Kit and SMS stand-ins; push rates.

Issue 20. Per-person push rates of both providers against their stand-ins' ceilings too.

1. The three stand-ins run as processes of their own on 127.0.0.1 (tests/notifications/
   fcm_standin.py; tests/notifications/standins.py hms, and sms with flow control at
   SMS_RATE requests a second, the account limit this run assumes).
2. Data, through the owner role with INSERT … SELECT: RESIDENTS × REACH_SCALE users with a
   resident membership in the demo district's grids; 60 % of them with a device (60 % FCM,
   40 % Push Kit), subscribed (device_topics rows, as after their topic tasks); 20 % without
   a device with an encrypted phone (the SMS recipients); ANALYZE.
3. Broadcast: POST /broadcasts (level emergency, to the district) as the demo `district`
   account, then `flask worker` with every provider configured at its stand-in, until the
   broadcast is walked, every topic task is sent and no SMS is pending. Times from the POST:
   the last topic message recorded (the pushes: one request per provider and language),
   the walk over the members, the last SMS request; requests each stand-in received.
4. Per-person pushes, in this process, PER_PERSON messages with distinct texts through each
   provider's client as the worker calls it (FcmSender.send: send_each of 500;
   HmsProvider.send: 64 requests in flight) vs each stand-in's ceiling measured in the same
   run by a plain `requests` client with 64 threads and keep-alive (the same bodies).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import requests
import sqlalchemy as sa

from bench.harness import Context

RESIDENTS, DEVICE_SHARE, SMS_SHARE = 1_000_000, 0.6, 0.2
SCALE = float(os.environ.get("REACH_SCALE", "0.1"))
SMS_RATE = 50  # requests a second at the SMS stand-in (1,000 numbers each)
PER_PERSON = 5000
THREADS = 64
TIMEOUT_S = 1800


def _start(ctx: Context, *args: str) -> tuple[subprocess.Popen, str, dict]:
    proc = subprocess.Popen([sys.executable, "-m", *args], cwd=ctx.root,
                            stdout=subprocess.PIPE, text=True)
    ready = proc.stdout.readline().split()
    if not ready or ready[0] != "READY":
        proc.kill()
        raise RuntimeError(f"{args} did not start: {ready}")
    return proc, ready[1], json.loads(proc.stdout.readline())


def _load(ctx: Context, n: int) -> dict:
    from server import pii
    from server.config import Config

    pii.configure(ctx.env.get("PII_KEYS") or Config.PII_KEYS,
                  ctx.env.get("BLIND_INDEX_KEY") or Config.BLIND_INDEX_KEY)
    owner = ctx.owner_engine()
    t0 = time.perf_counter()
    with owner.begin() as conn:
        grids = list(conn.scalars(sa.text(
            "SELECT id FROM areas WHERE level = 'grid' ORDER BY id")))
        district = conn.execute(sa.text(
            "SELECT id, code FROM areas WHERE level = 'district' ORDER BY id LIMIT 1")).one()
        conn.execute(sa.text("""
            INSERT INTO users (username, display_name, password_hash, is_active,
                               failed_logins, version)
            SELECT 'reach-' || g, '居民' || g, '-', true, 0, 1
            FROM generate_series(1, :n) g"""), {"n": n})
        conn.execute(sa.text("""
            INSERT INTO user_roles (user_id, role)
            SELECT id, 'resident' FROM users WHERE username LIKE 'reach-%'"""))
        conn.execute(sa.text("""
            INSERT INTO area_memberships (user_id, area_id, role)
            SELECT u.id, g.ids[1 + u.id % cardinality(g.ids)], 'resident'
            FROM users u, (SELECT CAST(:grids AS bigint[]) AS ids) g
            WHERE u.username LIKE 'reach-%'"""), {"grids": grids})
        # 60 % with a device: ids ≡ 0..5 (mod 10); of those, ≡ 0..3 FCM (60 %), 4..5 HMS.
        conn.execute(sa.text("""
            INSERT INTO devices (user_id, token, platform, provider, locale)
            SELECT id, 'reach-tok-' || id, 'android',
                   CASE WHEN id % 10 < 4 THEN 'fcm' ELSE 'hms' END, 'zh-CN'
            FROM users WHERE username LIKE 'reach-%' AND id % 10 < 6"""))
        conn.execute(sa.text("""
            INSERT INTO device_topics (device_id, topic)
            SELECT d.id, 'area-' || :code || '-emergency-zh-CN' FROM devices d
            WHERE d.token LIKE 'reach-tok-%'"""), {"code": district.code})
        ids = list(conn.scalars(sa.text(
            "SELECT id FROM users WHERE username LIKE 'reach-%' AND id % 10 IN (6, 7) "
            "ORDER BY id")))
    for start in range(0, len(ids), 20000):
        chunk = ids[start:start + 20000]
        phones = [pii.encrypt(f"139{i % 100_000_000:08d}", "user.phone") for i in chunk]
        with owner.begin() as conn:
            conn.execute(sa.text("""
                UPDATE users u SET phone_enc = v.p
                FROM unnest(CAST(:ids AS bigint[]), CAST(:ps AS text[])) AS v(id, p)
                WHERE u.id = v.id"""), {"ids": chunk, "ps": phones})
    with owner.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE users, user_roles, area_memberships, devices, "
                             "device_topics"))
    owner.dispose()
    return {"district_id": district.id, "district_code": district.code, "sms_recipients":
            len(ids), "load_s": round(time.perf_counter() - t0, 1)}


def _broadcast(ctx: Context, env: dict, district_id: int) -> dict:
    """The worker runs first (warmed up), then the POST; times are the database's, from
    the broadcast's created_at."""
    flask = str(ctx.root / ".venv/bin/flask")
    headers = ctx.auth_headers("district")
    worker = subprocess.Popen([flask, "worker"], env=env, cwd=ctx.root,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _warm_up(ctx, headers, worker)
        t0 = time.perf_counter()
        r = requests.post(f"{ctx.base_url}/broadcasts", headers=headers, timeout=30, json={
            "area_id": district_id, "level": "emergency", "title": "台风红色预警",
            "text": "超强台风今夜登陆，请立即转移至避灾安置点。"})
        posted_s = time.perf_counter() - t0
        if r.status_code != 201:
            raise RuntimeError(f"POST /broadcasts: {r.status_code} {r.text[:300]}")
        b = r.json()
        with ctx.engine.connect() as conn:
            while time.perf_counter() - t0 < TIMEOUT_S:
                time.sleep(0.5)
                if worker.poll() is not None:
                    raise RuntimeError(worker.stderr.read()[-2000:])
                row = conn.execute(sa.text("""
                    SELECT (SELECT count(*) FROM topic_tasks WHERE state = 'pending') AS topics,
                           (SELECT state FROM broadcasts WHERE id = :b) AS walk,
                           (SELECT count(*) FROM sms_outbox WHERE state = 'pending') AS sms
                """), {"b": b["id"]}).one()
                conn.commit()
                if row.walk == "done" and row.sms == 0 and row.topics == 0:
                    break
        wall = time.perf_counter() - t0
    finally:
        worker.terminate()
        worker.wait(30)
    with ctx.engine.connect() as conn:
        times = conn.execute(sa.text("""
            SELECT extract(epoch FROM (SELECT max(t.sent_at) FROM topic_tasks t
                                       WHERE t.notification_id = b.notification_id)
                                      - b.created_at) AS pushes_s,
                   extract(epoch FROM b.done_at - b.created_at) AS walk_s,
                   extract(epoch FROM (SELECT max(sent_at) FROM sms_outbox) - b.created_at)
                       AS sms_s,
                   extract(epoch FROM (SELECT min(sent_at) FROM sms_outbox) - b.created_at)
                       AS first_sms_s,
                   b.recipients
            FROM broadcasts b WHERE b.id = :b"""), {"b": b["id"]}).one()
        sms = conn.execute(sa.text("""
            SELECT count(*) FILTER (WHERE state = 'sent') AS sent, sum(attempts) AS attempts,
                   count(*) FILTER (WHERE attempts > 1) AS retried FROM sms_outbox""")).one()
        tasks = conn.execute(sa.text(
            "SELECT provider, topic, state FROM topic_tasks WHERE action = 'send'")).all()
    return {"post_ms": round(posted_s * 1000, 1), "wall_s": round(wall, 1),
            "pushes_s": round(float(times.pushes_s), 2), "walk_s": round(float(times.walk_s), 2),
            "first_sms_s": round(float(times.first_sms_s or 0), 2),
            "sms_s": round(float(times.sms_s or 0), 2),
            "topic_messages": [f"{t.provider}:{t.topic}:{t.state}" for t in tasks],
            "members_walked": times.recipients, "sms_sent": sms.sent,
            "sms_attempts": sms.attempts, "sms_rows_retried": sms.retried}


def _warm_up(ctx: Context, headers: dict, worker: subprocess.Popen) -> None:
    """As in production, the worker has been up before the typhoon: an info notice to one
    grid first, until it is pushed and walked (imports, the first round of every periodic
    task, the providers' OAuth tokens and connections)."""
    with ctx.engine.connect() as conn:
        grid = conn.scalar(sa.text("SELECT id FROM areas WHERE level = 'grid' ORDER BY id "
                                   "LIMIT 1"))
    r = requests.post(f"{ctx.base_url}/broadcasts", headers=headers, timeout=30, json={
        "area_id": grid, "level": "info", "title": "停水通知", "text": "明日9时至12时停水。"})
    if r.status_code != 201:
        raise RuntimeError(f"POST /broadcasts: {r.status_code} {r.text[:300]}")
    deadline = time.perf_counter() + 300
    with ctx.engine.connect() as conn:
        while time.perf_counter() < deadline:
            time.sleep(0.5)
            if worker.poll() is not None:
                raise RuntimeError(worker.stderr.read()[-2000:])
            busy = conn.scalar(sa.text(
                "SELECT (SELECT count(*) FROM topic_tasks WHERE state = 'pending') + "
                "(SELECT count(*) FROM broadcasts WHERE state = 'pending')"))
            conn.commit()
            if not busy:
                return
    raise RuntimeError("the warm-up broadcast was not sent in 300 s")


def _pushes(n: int, provider: str):
    from notifications.providers.base import Push

    return [Push(token=f"pp-{provider}-{i}", platform="android", title=f"案件SJ-{i}已派遣",
                 body=f"您上报的问题{i}已派遣至城市管理局。",
                 data={"kind": "case.dispatched", "notification_id": str(i)},
                 collapse_key=f"case:{i}", provider=provider) for i in range(n)]


def _rate(send, pushes) -> float:
    send(pushes[:200])  # warm: connections, OAuth token
    t0 = time.perf_counter()
    outcomes = send(pushes)
    elapsed = time.perf_counter() - t0
    return sum(o.status == "ok" for o in outcomes) / elapsed


def _ceiling(url: str, headers: dict, bodies: list[bytes]) -> float:
    session = requests.Session()
    session.trust_env = False
    session.mount(url, requests.adapters.HTTPAdapter(pool_maxsize=THREADS))

    def one(body: bytes) -> int:
        return session.post(url, data=body, headers=headers, timeout=30).status_code

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, bodies[:200]))
        t0 = time.perf_counter()
        ok = sum(c == 200 for c in pool.map(one, bodies))
        elapsed = time.perf_counter() - t0
    session.close()
    return ok / elapsed


def _per_person(fcm_info: dict, fcm_url: str, hms_config: dict) -> dict:
    from firebase_admin import credentials, messaging

    from notifications.providers import hms as hms_module
    from notifications.providers.fcm import FcmSender, build_message

    fcm = FcmSender(credentials.Certificate(fcm_info), endpoint=fcm_url)
    hms = hms_module.HmsProvider(hms_config["HMS_APP_ID"], hms_config["HMS_CLIENT_SECRET"],
                                 token_url=hms_config["HMS_TOKEN_URL"],
                                 push_url=hms_config["HMS_PUSH_URL"], concurrency=THREADS)
    try:
        out = {"fcm_rps": _rate(fcm.send, _pushes(PER_PERSON, "fcm")),
               "hms_rps": _rate(hms.send, _pushes(PER_PERSON, "hms"))}
        token = fcm.credential.get_access_token().access_token
        fcm_bodies = [json.dumps({"message": messaging._MessagingService.encode_message(
            build_message(p))}).encode() for p in _pushes(PER_PERSON, "fcm")]
        out["fcm_ceiling_rps"] = _ceiling(
            f"{fcm_url}/v1/projects/{fcm.app.project_id}/messages:send",
            {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            fcm_bodies)
        hms_bodies = [json.dumps(hms_module.build_message(p), ensure_ascii=False).encode()
                      for p in _pushes(PER_PERSON, "hms")]
        out["hms_ceiling_rps"] = _ceiling(
            f"{hms.push_url}/v1/{hms.app_id}/messages:send",
            {"Authorization": f"Bearer {hms._access_token()}",
             "Content-Type": "application/json; charset=UTF-8"}, hms_bodies)
    finally:
        fcm.close()
        hms.close()
    for p in ("fcm", "hms"):
        out[f"{p}_vs_ceiling"] = round(out[f"{p}_rps"] / out[f"{p}_ceiling_rps"], 2)
    return {k: round(v, 2) for k, v in out.items()}


def run(ctx: Context) -> dict:
    fcm_proc, fcm_url, fcm_info = _start(ctx, "tests.notifications.fcm_standin",
                                         "--project", "grid-bench")
    hms_proc, _, hms_config = _start(ctx, "tests.notifications.standins", "hms")
    sms_proc, _, sms_config = _start(ctx, "tests.notifications.standins", "sms",
                                     "--rate", str(SMS_RATE))
    sa_path = str(ctx.root / "var" / "bench-reach-fcm.json")
    with open(sa_path, "w") as fh:
        json.dump(fcm_info, fh)
    os.chmod(sa_path, 0o600)
    try:
        n = int(RESIDENTS * SCALE)
        data = _load(ctx, n)
        print(f"  {n:,} residents, {int(n * DEVICE_SHARE):,} devices, "
              f"{data['sms_recipients']:,} SMS recipients loaded in {data['load_s']} s",
              flush=True)
        env = {**ctx.env, "FIREBASE_CREDENTIALS": sa_path, "FCM_ENDPOINT": fcm_url,
               "LOG_LEVEL": "WARNING", "BROADCAST_BATCH_SIZE": "5000",
               **{k: str(v) for k, v in hms_config.items()},
               **{k: str(v) for k, v in sms_config.items()},
               "SMS_RATE_PER_S": str(SMS_RATE), "SMS_DAILY_CAP": "1000000"}
        result = _broadcast(ctx, env, data["district_id"])
        print(f"  broadcast: POST {result['post_ms']} ms; pushes out at "
              f"{result['pushes_s']} s; members walked at {result['walk_s']} s; "
              f"{result['sms_sent']:,} SMS out from {result['first_sms_s']} s to "
              f"{result['sms_s']} s", flush=True)
        per_person = _per_person(fcm_info, fcm_url, hms_config)
        print(f"  per-person: FCM {per_person['fcm_rps']:,.0f} msg/s "
              f"(ceiling {per_person['fcm_ceiling_rps']:,.0f}), HMS "
              f"{per_person['hms_rps']:,.0f} msg/s (ceiling "
              f"{per_person['hms_ceiling_rps']:,.0f})", flush=True)
    finally:
        for proc in (fcm_proc, hms_proc, sms_proc):
            proc.terminate()
            proc.wait(10)
    return {"scale": SCALE, "residents": n, "sms_rate_per_s": SMS_RATE, **data, **result,
            "per_person": per_person, "rows": []}
