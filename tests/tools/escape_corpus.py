"""The sandbox escape corpus: programs that try to leave the `python`, `shell` and `javascript`
sandboxes, and what "contained" means for each.

Each `Case` is a tool name, code (with ``{placeholders}`` filled from the `Host` of the test run) and a
check of the tool's result (``ToolResult.data``: stdout, stderr, exit_code, timed_out, ...). Host-side
checks (no file written outside, no process left, the listener never reached) are made by the tests
that run the corpus, through the tool's public entry and through ``loomiq tool run``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: The limits the corpus runs under: short, so that the CPU and wall-time cases end quickly.
SETTINGS: dict[str, Any] = {
    "timeout_s": 4.0, "cpu_s": 2, "memory_mb": 256, "max_processes": 32, "file_size_mb": 1,
    "work_dir_mb": 8, "max_output_bytes": 4096, "warm": 1,
}


@dataclass(frozen=True)
class Host:
    """What the host looks like to the corpus: paths and secrets that must stay out of reach."""

    token: str
    """A unique word: the names of files the corpus tries to create, and the host's secret value."""
    project: str
    """The repository root (absolute)."""
    database: str
    """A SQLite file holding the secret."""
    outside: str
    """A host directory the corpus tries to write into."""
    port: int
    """A TCP listener on the host's 127.0.0.1 that must never see a connection."""
    marker: str
    """A ``sleep`` argument unique to this run: a process of the corpus that outlived it would show it."""


@dataclass(frozen=True)
class Case:
    """One escape attempt and the result that shows it was contained."""

    name: str
    tool: str
    code: str
    check: Callable[[dict[str, Any], Host], None]

    def source(self, host: Host) -> str:
        """The code with the host's values filled in."""
        return self.code.format(**vars(host))


def _failed_with(*needles: str) -> Callable[[dict[str, Any], Host], None]:
    def check(data: dict[str, Any], host: Host) -> None:
        text = data["stdout"] + data["stderr"]
        assert data["exit_code"] != 0, data
        assert any(n in text for n in needles), (needles, data)

    return check


def _printed(expected: str) -> Callable[[dict[str, Any], Host], None]:
    def check(data: dict[str, Any], host: Host) -> None:
        assert data["exit_code"] == 0, data
        assert data["stdout"].strip() == expected, data

    return check


def _no_secret(data: dict[str, Any], host: Host) -> None:
    assert data["exit_code"] == 0, data
    assert host.token not in data["stdout"] + data["stderr"], data
    assert "SECRET" not in data["stdout"], data


def _sandbox_procs(data: dict[str, Any], host: Host) -> None:
    assert data["exit_code"] == 0, data
    lines = data["stdout"].splitlines()
    count = int(lines[0])
    # The sandbox's init, the program, and nothing of the host (no pytest, no init of the machine).
    assert count <= 3, data
    assert "pytest" not in data["stdout"] and host.token not in data["stdout"], data


def _loop_killed(data: dict[str, Any], host: Host) -> None:
    # The CPU limit ends it (SIGXCPU at the soft limit, SIGKILL at the hard one), or, on a machine so
    # loaded that it cannot get its CPU seconds in time, the wall-time limit does.
    if data["timed_out"]:
        _wall_killed(data, host)
        return
    assert data["exit_code"] in (128 + 24, 128 + 9), data
    assert any("CPU time" in n for n in data["notes"]), data


def _wall_killed(data: dict[str, Any], host: Host) -> None:
    assert data["timed_out"] is True and data["exit_code"] == 137, data
    assert any("wall time" in n for n in data["notes"]), data
    assert data["duration_ms"] < (SETTINGS["timeout_s"] + 3) * 1000, data


def _contained_bomb(data: dict[str, Any], host: Host) -> None:
    # Whatever the program's own exit, the call came back in time and the tree is gone (checked by the test).
    assert data["duration_ms"] < (SETTINGS["timeout_s"] + 3) * 1000, data


def _huge_output(data: dict[str, Any], host: Host) -> None:
    cap = SETTINGS["max_output_bytes"]
    assert data["stdout_truncated"] is True, data
    assert "[loomiq: output truncated at" in data["stdout"], data["stdout"][-200:]
    assert len(data["stdout"]) < cap + 200, len(data["stdout"])
    assert data["output_limited"] or data["exit_code"] == 0, data


def _outlived(data: dict[str, Any], host: Host) -> None:
    assert data["exit_code"] == 0 and "parent done" in data["stdout"], data


def _writes_refused(data: dict[str, Any], host: Host) -> None:
    assert data["exit_code"] == 0, data
    results = dict(line.split(" ", 1) for line in data["stdout"].splitlines())
    # Inside the sandbox only its work directory and /tmp take writes; everything else is read-only or absent.
    assert len(results) == 9, results
    for path, outcome in results.items():
        if path in (f"/work/{host.token}", f"/tmp/{host.token}"):
            assert outcome == "written", (path, outcome)
        else:
            assert outcome.startswith("refused"), (path, outcome)


CASES: list[Case] = [
    Case("network: the host's 127.0.0.1 listener", "python", """
import socket
s = socket.socket()
s.settimeout(3)
s.connect(("127.0.0.1", {port}))
""", _failed_with("Connection refused", "Network is unreachable")),
    Case("network: PostgreSQL on 127.0.0.1:5432", "python", """
import socket
socket.create_connection(("127.0.0.1", 5432), timeout=3)
""", _failed_with("Connection refused", "Network is unreachable")),
    Case("network: only an own loopback interface", "python", """
import socket
print(",".join(name for _, name in socket.if_nameindex()))
""", _printed("lo")),
    Case("network: PostgreSQL's unix socket", "python", """
import socket
s = socket.socket(socket.AF_UNIX)
s.connect("/var/run/postgresql/.s.PGSQL.5432")
""", _failed_with("No such file or directory")),
    Case("network: bash /dev/tcp to 127.0.0.1:5432", "shell", """
exec 3<>/dev/tcp/127.0.0.1/5432 && echo connected
""", _failed_with("Connection refused", "Network is unreachable")),
    Case("network: node to the host's listener", "javascript", """
const net = require("net");
const s = net.connect({port}, "127.0.0.1");
s.on("connect", () => {{ console.log("connected"); process.exit(0); }});
s.on("error", (e) => {{ console.error(e.code); process.exit(3); }});
""", _failed_with("ECONNREFUSED", "ENETUNREACH")),
    Case("write outside the work directory", "python", """
import os
targets = ["{outside}/{token}", "{project}/{token}", "/usr/{token}", "/etc/{token}", "/{token}",
           "/sandbox/{token}", "/work/{token}", "/tmp/{token}", "/root/{token}"]
for path in targets:
    try:
        with open(path, "w") as fh:
            fh.write("escaped")
        print(path, "written")
    except OSError as exc:
        print(path, "refused", exc.strerror)
""", _writes_refused),
    Case("read the project", "python", """
open("{project}/pyproject.toml").read()
""", _failed_with("No such file or directory")),
    Case("read the database file", "python", """
open("{database}", "rb").read()
""", _failed_with("No such file or directory")),
    Case("read /proc/1/environ and the environment", "python", """
import os
print(open("/proc/1/environ", "rb").read())
print(dict(os.environ))
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            print(open(f"/proc/{{pid}}/environ", "rb").read())
        except OSError:
            pass
""", _no_secret),
    Case("see the host's processes", "python", """
import os
pids = [p for p in os.listdir("/proc") if p.isdigit()]
print(len(pids))
for p in pids:
    print(open(f"/proc/{{p}}/cmdline", "rb").read().replace(b"\\0", b" ").decode())
""", _sandbox_procs),
    Case("read the home directory and keys", "shell", """
ls -la /root ~/.ssh /home 2>&1; cat /etc/shadow; exit 1
""", _failed_with("No such file or directory")),
    Case("gain privileges", "python", """
import os
os.setuid(0)
""", _failed_with("Operation not permitted", "Invalid argument")),
    Case("nested user namespace", "shell", """
unshare --user --map-root-user true && echo unshared
""", _failed_with("unshare failed", "Operation not permitted", "No space left on device")),
    Case("fork bomb (python)", "python", """
import os
while True:
    os.fork()
""", _contained_bomb),
    Case("fork bomb (bash)", "shell", """
f() {{ f | f & }}; f; sleep 1
""", _contained_bomb),
    Case("memory bomb", "python", """
chunks = []
while True:
    chunks.append(bytearray(16 * 1024 * 1024))
""", _failed_with("MemoryError")),
    Case("memory bomb (node)", "javascript", """
const a = [];
while (true) a.push(new Array(1e6).fill(1.5));
""", _failed_with("heap", "memory", "Memory")),
    Case("infinite loop", "python", """
while True:
    pass
""", _loop_killed),
    Case("sleep forever", "shell", """
sleep 1000
""", _wall_killed),
    Case("a child that outlives its parent", "python", """
import subprocess
subprocess.Popen(["sleep", "{marker}"], start_new_session=True)
subprocess.Popen(["sh", "-c", "sleep {marker} &"], start_new_session=True)
print("parent done")
""", _outlived),
    Case("huge output", "python", """
import sys
while True:
    sys.stdout.write("x" * 65536)
""", _huge_output),
    Case("huge file", "python", """
with open("/work/big", "wb") as fh:
    fh.write(b"x" * (8 * 1024 * 1024))
""", _failed_with("File too large", "No space left")),
    Case("fill the work directory", "shell", """
for i in $(seq 1 20); do head -c 900000 /dev/zero > /work/f$i || exit 7; done
""", _failed_with("No space left", "File too large")),
]
