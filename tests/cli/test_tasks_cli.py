"""The durable-task commands (`submit`, `status`, `wait`, `cancel`, `tasks`, `worker`, `run --durable`),
end to end: every command is a real `python -m loomiq.cli` process in a fresh working directory
(SQLite file ``loomiq.db`` there, the default), with no provider key in its environment, so the
agents are the built-in offline scripted ones.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import PROMPT, assert_one_line_error, cli, cli_env


@pytest.fixture(autouse=True)
def cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A fresh working directory: no loomiq.yaml, no loomiq.db."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def ok(*args: str, **extra_env: str) -> str:
    """Run a command that must exit 0; its stdout."""
    proc = cli(*args, **extra_env)
    assert proc.returncode == 0, (args, proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


def submit(*args: str) -> dict[str, Any]:
    """`loomiq submit ARGS --json`, parsed."""
    return json.loads(ok("submit", *args, "--json"))


def status(task_id: str) -> dict[str, Any]:
    return json.loads(ok("status", task_id, "--json"))


class WorkerProcess:
    """A `loomiq worker` subprocess; `stop()` sends SIGTERM and returns its exit code and stdout."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "loomiq.cli", "worker", *args], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=cli_env(),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, self.proc.stderr.read() if self.proc.stderr else ""
        self.ready = json.loads(line)
        assert self.ready["event"] == "worker_ready"

    def stop(self) -> tuple[int, str, str]:
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=30)


@pytest.fixture
def worker() -> Iterator[type[WorkerProcess]]:
    """Start workers with ``worker("--concurrency", "2")``; any still running are killed afterwards."""
    started: list[WorkerProcess] = []

    def start(*args: str) -> WorkerProcess:
        w = WorkerProcess(*args)
        started.append(w)
        return w

    yield start  # type: ignore[misc]
    for w in started:
        w.kill()


# --- submit, worker, wait, status, tasks ---------------------------------------------------------


def test_submit_returns_an_id_at_once_and_a_worker_runs_it(worker: Any, cwd: Path) -> None:
    proc = cli("submit", PROMPT, "--strategy", "consensus", "--priority", "high")
    assert proc.returncode == 0, proc.stderr
    task_id = proc.stdout.strip()
    assert len(proc.stdout.splitlines()) == 1 and len(task_id) == 32  # only the id on stdout
    assert "offline" in proc.stderr  # the notice, never on stdout
    assert (cwd / "loomiq.db").exists()  # the default database
    queued = status(task_id)
    assert queued["status"] == "queued" and queued["priority"] == "high" and queued["strategy"] == "consensus"
    assert queued["attempts"] == 0 and queued["agents"] and len(queued["agents"]) == 4

    # `wait` started before any worker exists: it follows the log until the task ends.
    waiter = subprocess.Popen([sys.executable, "-m", "loomiq.cli", "wait", task_id], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=cli_env())
    try:
        w = worker("--concurrency", "2")
        out, err = waiter.communicate(timeout=60)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.communicate()
    assert waiter.returncode == 0, (out, err)
    lines = out.splitlines()
    assert lines[0] == "queued (priority high)"
    assert any(line.startswith("started: attempt 1 on worker ") for line in lines)
    assert "offline: these answers come from loomiq's built-in scripted agents, not a real model" in lines
    assert sum(" done: " in line for line in lines) == 4  # one line per finished agent call
    assert "status:   completed" in lines and "output:" in lines and "tenant:   default" in lines

    done = status(task_id)
    assert done["status"] == "completed" and done["attempts"] == 1 and done["offline"] is True
    assert "offline answer" in done["output"] and done["usage"]["total_tokens"] > 0
    assert [a["status"] for a in done["attempt_history"]] == ["completed"]
    assert done["attempt_history"][0]["worker"] == w.ready["worker_id"]
    human = ok("status", task_id)
    assert "status:   completed" in human and "offline scripted answers" in human

    listed = json.loads(ok("tasks", "--status", "completed", "--json"))
    assert [t["id"] for t in listed] == [task_id]
    assert json.loads(ok("tasks", "--status", "queued", "--json")) == []
    table = ok("tasks").splitlines()
    assert table[0] == "tenant default: 1 task, newest first"
    assert table[1].split()[:3] == ["id", "status", "priority"] and table[2].split()[:2] == [task_id, "completed"]

    rc, out, err = w.stop()
    assert rc == 0, err
    assert json.loads(out.splitlines()[-1]) == {"event": "worker_stopped", "worker_id": w.ready["worker_id"],
                                                "claimed": 1}


def test_wait_json_streams_events_ending_with_task_finished(worker: Any) -> None:
    task_id = submit(PROMPT, "--strategy", "parallel")["id"]
    w = worker()
    events = [json.loads(line) for line in ok("wait", task_id, "--json").splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))  # the whole log, in order
    assert events[0]["type"] == "task_queued" and events[-1]["type"] == "task_finished"
    assert events[-1]["status"] == "completed" and all(e["task_id"] == task_id for e in events)
    assert w.stop()[0] == 0


def test_after_runs_a_task_once_its_dependency_completed(worker: Any) -> None:
    first = submit("Draft a migration plan for the billing database.", "--strategy", "single")
    second = submit("Review the migration plan.", "--strategy", "single", "--after", first["id"])
    assert second["status"] == "waiting" and second["after"] == [first["id"]]
    both = submit("Summarise both.", "--strategy", "single", "--after", f"{first['id']},{second['id']}")
    assert both["after"] == [first["id"], second["id"]]
    proc = cli("wait", second["id"], "--timeout", "1.5")  # long enough to replay the log on a busy machine
    assert proc.returncode == 1 and "is still waiting after 1.5s" in proc.stderr
    assert proc.stdout.splitlines() == [f"waiting for {first['id']}"]
    w = worker("--concurrency", "4")
    assert cli("wait", both["id"]).returncode == 0
    a, b, c = status(first["id"]), status(second["id"]), status(both["id"])
    assert a["status"] == b["status"] == c["status"] == "completed"
    assert a["finished_at"] <= b["started_at"] and b["finished_at"] <= c["started_at"]
    assert w.stop()[0] == 0


def test_idempotency_key_returns_the_first_task() -> None:
    one = submit(PROMPT, "--idempotency-key", "order-42")
    two = submit(PROMPT, "--idempotency-key", "order-42")
    assert one["id"] == two["id"] and two["prompt"] == PROMPT
    assert len(json.loads(ok("tasks", "--json"))) == 1


@pytest.mark.parametrize("change", [["another prompt entirely"], [PROMPT, "--priority", "high"],
                                    [PROMPT, "--strategy", "parallel"], [PROMPT, "--timeout", "30"]])
def test_idempotency_key_with_another_request_is_an_error(change: list[str]) -> None:
    one = submit(PROMPT, "--idempotency-key", "order-42")
    assert_one_line_error(cli("submit", *change, "--idempotency-key", "order-42"),
                          f"the idempotency key 'order-42' was already used for task {one['id']}", "use a new key")
    assert len(json.loads(ok("tasks", "--json"))) == 1


def test_database_from_the_environment_and_the_option(cwd: Path) -> None:
    url = f"sqlite:///{cwd / 'elsewhere.db'}"
    task_id = ok("submit", PROMPT, LOOMIQ_DATABASE_URL=url).strip()
    assert (cwd / "elsewhere.db").exists() and not (cwd / "loomiq.db").exists()
    assert json.loads(ok("status", task_id, "--json", "--database", url))["status"] == "queued"
    assert json.loads(ok("tasks", "--json", LOOMIQ_DATABASE_URL=url))[0]["id"] == task_id


# --- cancel --------------------------------------------------------------------------------------


def test_cancel_a_queued_task_and_its_dependents() -> None:
    parent = submit(PROMPT)["id"]
    child = submit("follow-up", "--after", parent)["id"]
    out = ok("cancel", parent)
    assert out.strip() == f"task {parent} cancelled (it was queued)"
    p, c = status(parent), status(child)
    assert p["status"] == "cancelled" and p["error"] == "cancelled by request" and p["attempts"] == 0
    assert c["status"] == "cancelled" and parent in c["error"]
    proc = cli("wait", parent)
    assert proc.returncode == 1 and "status:   cancelled" in proc.stdout
    again = cli("cancel", parent)
    assert again.returncode == 1 and "already ended (cancelled)" in again.stderr
    late = submit("after a cancelled one", "--after", parent)
    assert late["status"] == "cancelled"  # ended at submission, with a reason
    assert json.loads(ok("tasks", "--status", "cancelled", "--json"))[0]["id"] == late["id"]


# --- one-line errors -----------------------------------------------------------------------------


def test_unknown_dependency_is_one_line_exit_2() -> None:
    submit(PROMPT)  # a database exists
    assert_one_line_error(cli("submit", PROMPT, "--after", "0123456789abcdef0123456789abcdef"),
                          "unknown task id", "0123456789abcdef0123456789abcdef")
    assert_one_line_error(cli("submit", PROMPT, "--after", "not an id!"), "is not a task id")
    assert len(json.loads(ok("tasks", "--json"))) == 1  # nothing was queued


def test_dependency_cycle_is_one_line_exit_2() -> None:
    assert_one_line_error(cli("submit", PROMPT, "--id", "plan-a", "--after", "plan-a"),
                          "plan-a", "cannot depend on itself")
    ok("submit", PROMPT, "--id", "plan-a")
    assert_one_line_error(cli("submit", PROMPT, "--id", "plan-a"), "plan-a already exists")


@pytest.mark.parametrize("command", ["status", "wait", "cancel"])
def test_bad_or_unknown_task_id_is_one_line_exit_2(command: str) -> None:
    assert_one_line_error(cli(command, "0123456789abcdef0123456789abcdef"), "no database at loomiq.db")
    submit(PROMPT)
    assert_one_line_error(cli(command, "0123456789abcdef0123456789abcdef"), "no task 0123456789abcdef0123456789abcdef")
    assert_one_line_error(cli(command, "../etc/passwd"), "is not a task id")


def test_bad_options_are_one_line_exit_2() -> None:
    assert_one_line_error(cli("submit", PROMPT, "--priority", "urgent"), "unknown priority 'urgent'")
    assert_one_line_error(cli("submit", PROMPT, "--timeout", "0"), "--timeout must be a positive")
    assert_one_line_error(cli("submit", PROMPT, "--strategy", "telepathy"), "telepathy")
    assert_one_line_error(cli("submit", PROMPT, "--agents", "nobody"), "nobody")
    assert_one_line_error(cli("tasks", "--status", "finished"), "unknown status 'finished'")
    assert_one_line_error(cli("worker", "--concurrency", "0"), "--concurrency must be at least 1")
    for flags, message in ((["--lease", "1", "--renew", "2"], "--renew (2) must be positive and below --lease (1)"),
                           (["--lease", "0"], "--lease must be a positive number of seconds, not 0"),
                           (["--renew", "-1"], "--renew (-1) must be positive and below --lease (10)"),
                           (["--max-running", "0"], "--max-running must be at least 1, not 0")):
        line = assert_one_line_error(cli("worker", *flags), message)
        assert "_s" not in line  # the library's argument names (renew_s, lease_s) are not the user's flags
    assert_one_line_error(cli("worker", LOOMIQ_MAX_RUNNING="0"), "LOOMIQ_MAX_RUNNING='0': expected at least 1")
    assert_one_line_error(cli("submit", PROMPT, "--strategy", "single", "--allow-fewer"),
                          "--allow-fewer only applies to --strategy consensus, not single")
    assert_one_line_error(cli("submit", PROMPT, "--database", "mysql://db/x"), "cannot open the database",
                          "unsupported database URL")
    assert_one_line_error(cli("submit", PROMPT, "--database", "sqlite:///no/such/dir/x.db"),
                          "cannot open the database")
    assert_one_line_error(cli("run", PROMPT, "--database", "sqlite:///x.db"), "only applies to --durable")


# --- run --durable -------------------------------------------------------------------------------


def test_run_durable_journals_the_run(cwd: Path) -> None:
    proc = cli("run", PROMPT, "--strategy", "consensus", "--durable", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "completed" and result["offline"] is True and len(result["steps"]) == 4
    task = status(result["task_id"])  # the run is a task of the engine, in ./loomiq.db
    assert task["status"] == "completed" and task["output"] == result["output"] and task["attempts"] == 1
    assert [a["status"] for a in task["attempt_history"]] == ["completed"]
    events = [json.loads(line) for line in ok("wait", result["task_id"], "--json").splitlines()]
    assert [e["type"] for e in events].count("step_finished") == 4

    human = cli("run", PROMPT, "--strategy", "sequential", "--durable")
    assert human.returncode == 0, human.stderr
    lines = human.stdout.splitlines()
    assert lines[0].startswith("task: ") and "(durable, tenant default, in sqlite:///loomiq.db)" in lines[0]
    assert lines[1] == "offline: these answers come from loomiq's built-in scripted agents, not a real model"
    assert sum(" done: " in line for line in lines) == 3 and "status:   completed" in lines
    assert len(json.loads(ok("tasks", "--status", "completed", "--json"))) == 2


def test_run_without_durable_stores_nothing(cwd: Path) -> None:
    proc = cli("run", PROMPT, "--strategy", "single", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["status"] == "completed"
    assert not (cwd / "loomiq.db").exists()


# --- tenants -------------------------------------------------------------------------------------


def test_task_commands_work_on_the_tenant_given_and_say_which() -> None:
    mine = submit(PROMPT, "--tenant", "acme")
    assert mine["tenant_id"] == "acme"
    submit("another", "--tenant", "acme")
    submit("globex's own", "--tenant", "globex")
    empty = ok("tasks")
    assert empty.strip() == "no tasks in tenant default (other tenants hold tasks: acme (2), globex (1); " \
                            "add --tenant NAME)"
    listed = ok("tasks", "--tenant", "acme").splitlines()
    assert listed[0] == "tenant acme: 2 tasks, newest first" and len(listed) == 4
    assert [t["id"] for t in json.loads(ok("tasks", "--tenant", "globex", "--json"))] != [mine["id"]]
    assert "tenant:   acme" in ok("status", mine["id"], "--tenant", "acme")
    # Another tenant's task is not found, and the message says whose it is and what to add.
    for command in (["status"], ["wait", "--timeout", "0.1"], ["cancel"]):
        assert_one_line_error(cli(*command, mine["id"]), f"task {mine['id']} is not in tenant default",
                              "belongs to tenant acme", "add --tenant acme")
    assert_one_line_error(cli("submit", "follow-up", "--after", mine["id"]), "belongs to tenant acme")
    assert ok("cancel", mine["id"], "--tenant", "acme").startswith(f"task {mine['id']} cancelled")
    assert_one_line_error(cli("tasks", "--tenant", " "), "--tenant is empty")


def test_the_same_idempotency_key_in_two_tenants_is_two_tasks() -> None:
    one = submit(PROMPT, "--idempotency-key", "k", "--tenant", "acme")
    two = submit("something else", "--idempotency-key", "k", "--tenant", "globex")
    assert one["id"] != two["id"]


def test_a_durable_run_is_filed_under_the_tenant_given() -> None:
    result = json.loads(ok("run", PROMPT, "--durable", "--tenant", "acme", "--strategy", "single", "--json"))
    assert [t["id"] for t in json.loads(ok("tasks", "--tenant", "acme", "--json"))] == [result["task_id"]]
    assert json.loads(ok("tasks", "--json")) == []
    assert_one_line_error(cli("run", PROMPT, "--tenant", "acme"), "--tenant only applies to --durable runs")
