"""Background jobs (server/jobs.py) as the worker runs them: a job whose worker died is taken
again once its lease has passed, and given up (failed, with the one error shape) after
JOB_MAX_ATTEMPTS starts; a handler's domain error is the job's error; the job is its
creator's alone; `flask worker` runs jobs as one of its periodic tasks."""

from __future__ import annotations

from datetime import timedelta

import pytest

from server import clock, db, jobs
from server.auth.actor import Actor
from server.cli import periodic_tasks
from server.errors import Conflict
from server.storage.blobs import blob_store
from tests.conftest import assert_error_shape


class WorkerDied(BaseException):
    """What a killed worker looks like from inside: nothing after it runs."""


@pytest.fixture
def echo():
    """A job kind for these tests: `params.do` says what the handler does."""

    def handler(s, actor: Actor, run: jobs.JobRun) -> dict:
        run.progress(1, 2)
        if run.params["do"] == "die":
            raise WorkerDied
        if run.params["do"] == "conflict":
            raise Conflict("Not now", allowed=["later"])
        run.progress(2)
        return {"echo": run.params["do"], "user": actor.user_id}

    jobs.handlers["test_echo"] = handler
    yield
    del jobs.handlers["test_echo"]


def job_of(user, do: str) -> int:
    s = db.session()
    job = jobs.create(s, Actor(user_id=user.id), "test_echo", params={"do": do})
    s.commit()
    return job.id


def test_a_job_runs_as_its_creator_and_only_they_see_it(echo, make_user, auth_headers,
                                                        client):
    user = make_user("grid_worker")
    job_id = job_of(user, "hello")
    mine, theirs = auth_headers(user=user), auth_headers("admin")
    assert client.get(f"/jobs/{job_id}", headers=mine).get_json()["state"] == "queued"
    assert_error_shape(client.get(f"/jobs/{job_id}", headers=theirs), 404)

    assert jobs.run_next(db.session(), blob_store()) == {
        "job": job_id, "kind": "test_echo", "state": "succeeded"}
    body = client.get(f"/jobs/{job_id}", headers=mine).get_json()
    assert body["state"] == "succeeded"
    assert body["result"] == {"echo": "hello", "user": user.id}
    assert body["progress"] == {"done": 2, "total": 2}


def test_a_domain_error_is_the_jobs_error(echo, make_user, auth_headers, client):
    user = make_user("grid_worker")
    job_id = job_of(user, "conflict")
    jobs.run_next(db.session(), blob_store())
    body = client.get(f"/jobs/{job_id}", headers=auth_headers(user=user)).get_json()
    assert body["state"] == "failed" and body["result"] is None
    assert body["error"] == {"code": 409, "status": "Conflict", "message": "Not now",
                             "allowed": ["later"]}


def test_a_job_whose_worker_died_is_taken_again_then_given_up(echo, make_user, auth_headers,
                                                               client):
    user = make_user("grid_worker")
    job_id = job_of(user, "die")
    settings = jobs.JobSettings(lease_s=60, max_attempts=2)
    now = clock.now()
    for _started in (1, 2):  # each start dies
        with pytest.raises(WorkerDied):
            jobs.run_next(db.session(), blob_store(), settings=settings, now=now)
        db.session.rollback()
        body = client.get(f"/jobs/{job_id}", headers=auth_headers(user=user)).get_json()
        assert body["state"] == "running"
        # leased: no other worker takes it before the lease has passed
        assert jobs.run_next(db.session(), blob_store(), settings=settings,
                             now=now + timedelta(seconds=59)) is None
        now += timedelta(seconds=61)
    assert jobs.run_next(db.session(), blob_store(), settings=settings, now=now)["state"] == (
        "failed")
    body = client.get(f"/jobs/{job_id}", headers=auth_headers(user=user)).get_json()
    assert body["state"] == "failed"
    assert body["error"]["code"] == 500
    assert body["error"]["message"] == "The job stopped the worker 2 times; it is not tried again."


def test_the_worker_runs_jobs():
    assert "run_jobs" in {t.name for t in periodic_tasks}
