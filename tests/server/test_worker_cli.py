"""`flask worker --task NAME`: extra push senders run only the delivery task, so that sweeps
and reminders stay in the one full worker."""

from __future__ import annotations

import signal

import pytest

from server import cli


@pytest.fixture
def recorded_tasks(monkeypatch) -> list[str]:
    ran: list[str] = []
    tasks = [cli.PeriodicTask(name, 1, lambda s, name=name: ran.append(name))
             for name in ("deliver_notifications", "case_sweep", "service_reminders")]
    monkeypatch.setattr(cli, "periodic_tasks", tasks)
    # run_worker installs its own SIGINT/SIGTERM handlers: not in the test runner.
    monkeypatch.setattr(signal, "signal", lambda *args: None)
    return ran


def test_the_worker_runs_every_task_by_default(app, recorded_tasks):
    result = app.test_cli_runner().invoke(args=["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert recorded_tasks == ["deliver_notifications", "case_sweep", "service_reminders"]


def test_task_limits_a_worker_to_the_named_tasks(app, recorded_tasks):
    result = app.test_cli_runner().invoke(args=["worker", "--once", "--task",
                                                "deliver_notifications"])
    assert result.exit_code == 0, result.output
    assert recorded_tasks == ["deliver_notifications"]


def test_an_unknown_task_is_refused(app, recorded_tasks):
    result = app.test_cli_runner().invoke(args=["worker", "--once", "--task", "deliver"])
    assert result.exit_code != 0
    assert "no such task: deliver" in result.output
    assert recorded_tasks == []
