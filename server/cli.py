"""`flask` commands: bootstrap-db, seed-demo, worker, sweep, create-user."""

from __future__ import annotations

import importlib
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import click
import sqlalchemy as sa
from flask import Flask, current_app
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from server import db

log = logging.getLogger("server.worker")


@dataclass
class PeriodicTask:
    """Work the worker runs every `every_s` seconds, each run in its own transaction."""

    name: str
    every_s: float
    run: Callable[[Session], object]


# Filled at wiring (server/modules.py) from each package's wiring.py.
periodic_tasks: list[PeriodicTask] = []


def grant_app_role(conn: sa.Connection, app_role: str, owner_role: str) -> None:
    """Give the app's login role what it needs and nothing more: DML everywhere except
    the audit trail, which it may only read and append to."""
    if app_role == owner_role:
        return  # one-role deployment: the trigger still keeps the audit trail append-only
    # Quoted (and escaped) as an identifier; run as driver SQL so that no character of a
    # role name can be taken for a bind parameter (sa.text reads ":name" as one).
    role = conn.dialect.identifier_preparer.quote_identifier(app_role)
    statements = [
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
        f"REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM {role}",
        f"REVOKE INSERT, UPDATE, DELETE ON alembic_version FROM {role}",
    ]
    for stmt in statements:
        conn.exec_driver_sql(stmt)


def bootstrap_db(app: Flask, revision: str = "head") -> None:
    from flask_migrate import upgrade

    upgrade(revision=revision)
    app_url = make_url(app.config["DATABASE_URL"])
    owner_url = make_url(app.config["MIGRATION_DATABASE_URL"])
    with db.engine_for(str(owner_url.render_as_string(hide_password=False))).begin() as conn:
        grant_app_role(conn, app_url.username, owner_url.username)


def run_worker(app: Flask, once: bool = False, tick_s: float = 1.0,
               only: tuple[str, ...] = ()) -> None:
    """Run periodic tasks (those named in `only`, else all) until SIGINT/SIGTERM. Each task
    commits on its own; a failing task is logged and retried at its next turn, the others
    go on."""
    stopping = False

    def _stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    unknown = set(only) - {t.name for t in periodic_tasks}
    if unknown:
        raise click.BadParameter(f"no such task: {', '.join(sorted(unknown))}", param_hint="--task")
    tasks = [t for t in periodic_tasks if not only or t.name in only]
    next_run = {t.name: 0.0 for t in tasks}
    log.info("worker started", extra={"tasks": [t.name for t in tasks]})
    while not stopping:
        for task in tasks:
            if time.monotonic() < next_run[task.name]:
                continue
            next_run[task.name] = time.monotonic() + task.every_s
            try:
                with db.unit_of_work() as s:
                    result = task.run(s)
                if result:
                    log.info("task done", extra={"task": task.name, "result": result})
            except Exception:
                log.exception("task failed", extra={"task": task.name})
            finally:
                db.session.remove()
        if once:
            break
        time.sleep(tick_s)
    log.info("worker stopped")


def init_cli(app: Flask) -> None:
    @app.cli.command("bootstrap-db")
    def bootstrap_db_command() -> None:
        """Migrate to head (as the owner role) and grant the app role its privileges."""
        bootstrap_db(current_app)
        click.echo("database at head")

    @app.cli.command("seed-demo")
    @click.option("--force", is_flag=True, help="Seed even if demo data exists.")
    def seed_demo_command(force: bool) -> None:
        """Create the deterministic demo district once (accounts, areas, records)."""
        module, _, name = current_app.config.get(
            "DEMO_SEEDER", "grid.demo:seed").partition(":")
        seed = getattr(importlib.import_module(module), name)
        with db.unit_of_work() as s:
            message = seed(s, force=force)
        click.echo(message)

    @app.cli.command("worker")
    @click.option("--once", is_flag=True, help="Run every task once and exit.")
    @click.option("--task", "only", multiple=True, metavar="NAME",
                  help="Run only this task (repeatable), e.g. deliver_notifications for "
                       "extra push senders beside a full worker.")
    def worker_command(once: bool, only: tuple[str, ...]) -> None:
        """Background worker: outbox delivery, deadline sweeps, housekeeping."""
        run_worker(current_app, once=once, only=only)

    @app.cli.command("sweep")
    def sweep_command() -> None:
        """Run every periodic task once (cron-friendly)."""
        run_worker(current_app, once=True)
