"""Manage a project-owned PostgreSQL 15 + PostGIS 3 cluster for `make run` and `make test`.

Stdlib only: the Makefile runs it before (and independently of) the app's dependencies.
The cluster lives in its own directory, listens on 127.0.0.1 at its own port and keeps its
unix socket inside that directory, so it never clashes with a system cluster on 5432.

    python -m scripts.localdb ensure-packages
    python -m scripts.localdb start --dir var/postgres --port 54320 [--db grid] [--fresh] [--fast]
    python -m scripts.localdb stop --dir var/postgres

`start` prints exactly three KEY=VALUE lines on stdout (the database URLs); all progress goes
to stderr. Expected failures are one-line messages with exit status 1 (2: packages missing).
"""

from __future__ import annotations

import argparse
import errno
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

PG_MAJOR = "15"
PG_BIN = Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")
PG_EXT = Path(f"/usr/share/postgresql/{PG_MAJOR}/extension")
# postgresql-15 itself provides postgresql-contrib-15 (pg_trgm) on Debian 12.
APT_PACKAGES = (f"postgresql-{PG_MAJOR}", f"postgresql-{PG_MAJOR}-postgis-3")
REQUIRED_FILES = (PG_BIN / "initdb", PG_EXT / "postgis.control", PG_EXT / "pg_trgm.control")

OS_USER = "postgres"  # initdb/pg_ctl refuse to run as root; this user owns the cluster then
SUPERUSER = "postgres"
OWNER_ROLE = "grid_owner"  # owns the database and its objects; used by migrations
APP_ROLE = "grid_app"  # what the app connects as: no superuser, no ownership
HOST = "127.0.0.1"
CONF_NAME = "localdb.conf"  # rewritten on every start; included from postgresql.conf
OUR_FILES = {"server.log", CONF_NAME}  # files we may leave in a not-yet-initialised DIR
SOCKET_PATH_MAX = 107  # sun_path is 108 bytes including the terminating NUL
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class LocalDbError(Exception):
    """An expected failure: reported as one line, never as a traceback."""

    exit_code = 1


class MissingPackages(LocalDbError):
    """PostgreSQL/PostGIS are not installed and we may not install them ourselves."""

    exit_code = 2


def log(msg: str) -> None:
    """Progress goes to stderr so stdout stays machine-readable."""
    print(f"localdb: {msg}", file=sys.stderr, flush=True)


def _is_root() -> bool:
    return os.geteuid() == 0


def _child_env() -> dict[str, str]:
    """Drop PG* variables so a caller's PGHOST/PGDATA/... cannot redirect our commands."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_MESSAGES"] = "C"
    return env


def _run(
    cmd: Sequence[str], *, as_postgres: bool = False, input_: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command with captured output; as the postgres OS user when we are root."""
    argv = list(cmd)
    if as_postgres and _is_root():
        argv = ["runuser", "-u", OS_USER, "--", *argv]
    try:
        proc = subprocess.run(
            argv,
            input=input_,
            capture_output=True,
            check=False,  # callers decide; failures become LocalDbError below
            text=True,
            env=_child_env(),
            cwd="/",  # the caller's cwd may not be readable by the postgres user
        )
    except FileNotFoundError as exc:
        raise LocalDbError(f"cannot run {argv[0]}: {exc.strerror}") from None
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        last = detail[-1] if detail else f"exit status {proc.returncode}"
        for line in detail[:-1]:
            print(f"  {line}", file=sys.stderr)
        raise LocalDbError(f"{Path(cmd[0]).name} failed: {last}")
    return proc


# --------------------------------------------------------------------------- packages


def _missing_files() -> list[Path]:
    return [p for p in REQUIRED_FILES if not p.exists()]


def _install_hint() -> str:
    pkgs = " ".join(APT_PACKAGES)
    return (
        "sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive "
        f"apt-get install -y --no-install-recommends {pkgs}"
    )


def ensure_packages() -> None:
    """Make sure PostgreSQL 15 with PostGIS 3 and pg_trgm is installed (apt-get when root)."""
    missing = _missing_files()
    if not missing:
        log(f"PostgreSQL {PG_MAJOR} + PostGIS 3 + pg_trgm are installed")
        return
    names = ", ".join(str(p) for p in missing)
    if not _is_root():
        raise MissingPackages(
            f"PostgreSQL {PG_MAJOR} + PostGIS 3 not installed (missing {names}); "
            f"install them with: {_install_hint()}"
        )
    if shutil.which("apt-get") is None:
        raise MissingPackages(
            f"missing {names} and apt-get is not available; install "
            f"{' '.join(APT_PACKAGES)} (PostgreSQL {PG_MAJOR} with PostGIS 3) by hand"
        )
    log(f"missing {names}; installing {' '.join(APT_PACKAGES)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", *APT_PACKAGES],
    ):
        # apt's output is useful progress; keep it off stdout.
        rc = subprocess.call(cmd, env=env, stdout=sys.stderr, stderr=sys.stderr)
        if rc != 0:
            raise LocalDbError(f"`{' '.join(cmd)}` failed with exit status {rc}")
    still = _missing_files()
    if still:
        raise LocalDbError(
            f"still missing after apt-get install: {', '.join(str(p) for p in still)}"
        )
    log("installed PostgreSQL + PostGIS (Debian may also start its own cluster on 5432; unused)")


def _require_installed() -> None:
    missing = _missing_files()
    if missing:
        raise MissingPackages(
            f"PostgreSQL {PG_MAJOR} + PostGIS 3 not installed (missing {missing[0]}); "
            "run `python -m scripts.localdb ensure-packages` or: " + _install_hint()
        )
    if _is_root():
        try:
            pwd.getpwnam(OS_USER)
        except KeyError:
            raise LocalDbError(f"running as root but there is no `{OS_USER}` OS user") from None


# --------------------------------------------------------------------------- cluster helpers


def _psql_bin() -> str:
    for cand in (PG_BIN / "psql", Path("/usr/bin/psql")):
        if cand.exists():
            return str(cand)
    raise MissingPackages(f"psql not found; install postgresql-client-{PG_MAJOR}")


def _status(data: Path) -> int | None:
    """PID of the postmaster serving DATA, or None; clears a pid file left by a dead server."""
    if not (data / "PG_VERSION").exists():
        return None
    proc = _run([str(PG_BIN / "pg_ctl"), "status", "-D", str(data)], as_postgres=True, check=False)
    if proc.returncode != 0:  # 3: not running, 4: no usable data directory
        return None
    pidfile = data / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().splitlines()[0])
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError, IndexError):
        return None
    if comm != "postgres":
        # After a container restart the PID may belong to something else: the postmaster
        # would refuse to start ("lock file already exists"), so drop the stale file.
        log(f"removing stale {pidfile} (pid {pid} is `{comm}`, not postgres)")
        pidfile.unlink(missing_ok=True)
        return None
    return pid


def _running_port(data: Path) -> int | None:
    """Port recorded by the running postmaster (4th line of postmaster.pid)."""
    try:
        return int((data / "postmaster.pid").read_text().splitlines()[3])
    except (OSError, ValueError, IndexError):
        return None


def _stop(data: Path, mode: str) -> None:
    if _status(data) is None:
        return
    log(f"stopping server in {data} (-m {mode})")
    _run([str(PG_BIN / "pg_ctl"), "stop", "-w", "-m", mode, "-D", str(data)], as_postgres=True)


def _check_port_free(port: int) -> None:
    """Fail early and clearly instead of letting the postmaster die on bind()."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as postgres does
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                why = "is already in use (another server?)"
            else:
                why = f"cannot be bound ({exc.strerror})"
            raise LocalDbError(
                f"port {port} on {HOST} {why}; choose another with PGPORT=... (make) or --port"
            ) from None


def _ensure_traversable(data: Path) -> None:
    """The postgres OS user must reach DATA: add o+x to exactly the ancestors that block it."""
    for anc in reversed(data.parents):  # top-down, so each test sees the fixed parents
        ok = _run(["test", "-x", str(anc)], as_postgres=True, check=False).returncode == 0
        if not ok:
            mode = anc.stat().st_mode
            os.chmod(anc, mode | 0o001)
            log(f"added o+x to {anc} so the `{OS_USER}` user can reach {data}")


def _safe_to_delete(data: Path) -> bool:
    """Only ever rm -rf something that is (or was about to become) a cluster directory."""
    if not data.exists():
        return True
    if not data.is_dir():
        return False
    if (data / "PG_VERSION").exists():
        return True
    return {p.name for p in data.iterdir()} <= OUR_FILES


def _prepare_dir(data: Path) -> None:
    """Create DATA (0700); owned by the postgres OS user when we are root."""
    data.parent.mkdir(parents=True, exist_ok=True)
    data.mkdir(mode=0o700, exist_ok=True)
    leftovers = [p.name for p in data.iterdir() if p.name not in OUR_FILES]
    if leftovers:
        raise LocalDbError(
            f"{data} is not empty and not a PostgreSQL data directory "
            f"(found {', '.join(sorted(leftovers)[:3])}); use another --dir or remove it"
        )
    for name in OUR_FILES:
        (data / name).unlink(missing_ok=True)
    os.chmod(data, 0o700)
    if _is_root():
        pw = pwd.getpwnam(OS_USER)
        os.chown(data, pw.pw_uid, pw.pw_gid)
        _ensure_traversable(data)


def _initdb(data: Path) -> None:
    log(f"initdb {data}")
    base = [str(PG_BIN / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8"]
    proc = _run([*base, "--locale=C.UTF-8"], as_postgres=True, check=False)
    if proc.returncode != 0:
        log("initdb with --locale=C.UTF-8 failed; retrying with --no-locale")
        for child in data.iterdir():  # initdb normally cleans up, but make sure
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        _run([*base, "--no-locale"], as_postgres=True)


def _quote_conf(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _write_conf(data: Path, port: int, fast: bool) -> None:
    """Our settings live in one file we own and rewrite; postgresql.conf just includes it."""
    socket_dir = str(data)
    if len(f"{socket_dir}/.s.PGSQL.{port}") > SOCKET_PATH_MAX:
        log(f"{data} is too long for a unix socket path; listening on TCP only")
        socket_dir = ""
    lines = [
        "# Written by scripts/localdb.py on every start; edits here are overwritten.",
        f"listen_addresses = {_quote_conf(HOST)}",
        f"port = {port}",
        f"unix_socket_directories = {_quote_conf(socket_dir)}",
        "max_connections = 200",
        "shared_buffers = '256MB'",
        "timezone = 'UTC'",
        "log_timezone = 'UTC'",
    ]
    if fast:  # throwaway test clusters only: a crash may corrupt them, which is fine there
        lines += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
    conf = data / CONF_NAME
    conf.write_text("\n".join(lines) + "\n")
    os.chmod(conf, 0o644)
    if _is_root():
        pw = pwd.getpwnam(OS_USER)
        os.chown(conf, pw.pw_uid, pw.pw_gid)
    main_conf = data / "postgresql.conf"
    include = f"include = {_quote_conf(CONF_NAME)}"
    text = main_conf.read_text()
    if include not in text.splitlines():
        with main_conf.open("a") as fh:  # appended last, so it wins over initdb's defaults
            fh.write(f"\n{include}\n")


def _start_server(data: Path) -> None:
    logfile = data / "server.log"
    log(f"starting server in {data} (log {logfile})")
    proc = _run(
        [str(PG_BIN / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(data), "-l", str(logfile)],
        as_postgres=True,
        check=False,
    )
    if proc.returncode != 0:
        try:
            tail = logfile.read_text(errors="replace").strip().splitlines()[-8:]
        except OSError:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
        for line in tail:
            print(f"  {line}", file=sys.stderr)
        last = next((ln for ln in reversed(tail) if "FATAL" in ln), tail[-1] if tail else "")
        raise LocalDbError(f"PostgreSQL did not start ({last.strip()}); see {logfile}")


def _psql(port: int, db: str, sql: str) -> str:
    """Run SQL as the superuser over TCP (trust auth), stopping at the first error."""
    conn = ["-h", HOST, "-p", str(port), "-U", SUPERUSER, "-d", db]
    proc = _run(
        [_psql_bin(), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", *conn, "-f", "-"], input_=sql
    )
    return proc.stdout.strip()


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _provision(port: int, db: str) -> None:
    """Roles, database, extensions and grants; every statement is safe to repeat."""
    roles = []
    for role, extra in ((OWNER_ROLE, ""), (APP_ROLE, " NOSUPERUSER NOCREATEDB NOCREATEROLE")):
        roles.append(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {_lit(role)}) "
            f'THEN CREATE ROLE "{role}"; END IF; END $$;\n'
            f'ALTER ROLE "{role}" LOGIN PASSWORD {_lit(role)}{extra};\n'
        )
    _psql(port, "postgres", "".join(roles))
    exists = _psql(port, "postgres", f"SELECT 1 FROM pg_database WHERE datname = {_lit(db)};")
    if exists != "1":
        log(f"creating database {db}")
        _psql(port, "postgres", f'CREATE DATABASE "{db}" OWNER "{OWNER_ROLE}";')
    _psql(
        port,
        "postgres",
        f'ALTER DATABASE "{db}" OWNER TO "{OWNER_ROLE}";\n'
        f"ALTER DATABASE \"{db}\" SET timezone TO 'UTC';\n"
        f'GRANT CONNECT, TEMP ON DATABASE "{db}" TO "{APP_ROLE}";\n',
    )
    _psql(
        port,
        db,
        "CREATE EXTENSION IF NOT EXISTS postgis;\n"
        "CREATE EXTENSION IF NOT EXISTS pg_trgm;\n"
        f'GRANT USAGE ON SCHEMA public TO "{APP_ROLE}";\n',
    )


def urls(port: int, db: str) -> dict[str, str]:
    """The three connection URLs for a cluster started by `start`."""
    return {
        "DATABASE_URL": f"postgresql+psycopg2://{APP_ROLE}:{APP_ROLE}@{HOST}:{port}/{db}",
        "MIGRATION_DATABASE_URL": (
            f"postgresql+psycopg2://{OWNER_ROLE}:{OWNER_ROLE}@{HOST}:{port}/{db}"
        ),
        "ADMIN_DATABASE_URL": f"postgresql+psycopg2://{SUPERUSER}@{HOST}:{port}/postgres",
    }


# --------------------------------------------------------------------------- public API


def start(
    dir: str | os.PathLike[str],
    port: int,
    db: str = "grid",
    fresh: bool = False,
    fast: bool = False,
) -> dict[str, str]:
    """Start (initialising if needed) the cluster in DIR and provision DB; return its URLs."""
    if not 0 < port < 65536:
        raise LocalDbError(f"invalid port {port}")
    if not IDENT.match(db):
        raise LocalDbError(f"invalid database name {db!r} (letters, digits, _; max 63)")
    _require_installed()
    data = Path(dir).expanduser().resolve()

    if fresh and data.exists():
        if not _safe_to_delete(data):
            raise LocalDbError(f"refusing to delete {data}: it is not a PostgreSQL data directory")
        _stop(data, "immediate")
        log(f"removing {data}")
        shutil.rmtree(data)

    pid = _status(data)
    if pid is None:
        _check_port_free(port)  # before initdb, so a busy port costs nothing
    if not (data / "PG_VERSION").exists():
        _prepare_dir(data)
        _initdb(data)
    elif _is_root():
        _ensure_traversable(data)

    if pid is not None:
        running = _running_port(data)
        if running is not None and running != port:
            raise LocalDbError(
                f"the server in {data} is already running on port {running}, not {port}; "
                f"stop it (python -m scripts.localdb stop --dir {dir}) or use --port {running}"
            )
        _write_conf(data, port, fast)  # takes effect for reloadable settings and next start
        _run([str(PG_BIN / "pg_ctl"), "reload", "-D", str(data)], as_postgres=True)
        log(f"server in {data} already running (pid {pid}) on {HOST}:{port}")
    else:
        _write_conf(data, port, fast)
        _start_server(data)
        log(f"server running on {HOST}:{port}{' (fast: fsync off)' if fast else ''}")

    _provision(port, db)
    log(f"database {db} ready (roles {OWNER_ROLE}, {APP_ROLE}; postgis, pg_trgm)")
    return urls(port, db)


def stop(dir: str | os.PathLike[str]) -> None:
    """Stop the server on DIR if one runs; not running (or no cluster) is not an error."""
    data = Path(dir).expanduser().resolve()
    if not (data / "PG_VERSION").exists():
        log(f"no cluster in {data}; nothing to stop")
        return
    _require_installed()
    if _status(data) is None:
        log(f"no server running in {data}")
        return
    _stop(data, "fast")
    log(f"stopped server in {data}")


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.localdb", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("ensure-packages", help="install PostgreSQL 15 + PostGIS 3 if missing")
    p_start = sub.add_parser("start", help="start the cluster and print its URLs")
    p_start.add_argument("--dir", required=True, help="cluster data directory")
    p_start.add_argument("--port", required=True, type=int, help="TCP port on 127.0.0.1")
    p_start.add_argument("--db", default="grid", help="database to create (default: grid)")
    p_start.add_argument("--fresh", action="store_true", help="delete DIR and start over")
    p_start.add_argument("--fast", action="store_true", help="fsync off: throwaway clusters")
    p_stop = sub.add_parser("stop", help="stop the cluster if it runs")
    p_stop.add_argument("--dir", required=True, help="cluster data directory")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; expected failures become `localdb: error: ...` and exit status 1/2."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "ensure-packages":
            ensure_packages()
        elif args.command == "start":
            found = start(args.dir, args.port, db=args.db, fresh=args.fresh, fast=args.fast)
            for key, value in found.items():
                print(f"{key}={value}")
        elif args.command == "stop":
            stop(args.dir)
    except LocalDbError as exc:
        print(f"localdb: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("localdb: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
