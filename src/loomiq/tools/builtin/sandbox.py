"""Running untrusted code in a bubblewrap sandbox: the engine of the `python`, `shell` and
`javascript` tools.

Every call gets a fresh sandbox (``bwrap``, Debian package ``bubblewrap``):

- own user, pid, network, IPC, UTS and cgroup namespaces: no network at all (its own loopback only,
  so 127.0.0.1:5432 is nobody), no host process visible, a fresh ``/proc`` whose pid 1 is the
  sandbox's own init (started with an empty environment: ``/proc/1/environ`` shows nothing of the
  host), no nested user namespaces;
- a read-only system (``/usr`` and the ``/bin``, ``/lib``... links or binds, a few files of ``/etc``),
  a minimal ``/dev``, and a fresh, empty, size-capped tmpfs as the work directory (``/work``, also
  ``HOME``) and ``/tmp``: nothing of the host's project, database, keys or home is mounted;
- resource limits applied inside, by ``prlimit`` just before the program starts: CPU seconds, memory
  (``RLIMIT_DATA``: heap and anonymous mappings, which lets V8 reserve address space), processes
  (counted per user namespace, so each sandbox has its own budget), file size, open files, no core
  files; when loomiq runs as root the sandbox is started as an unprivileged uid (``nobody``), since
  the kernel does not apply the process limit to root;
- wall time: past it the whole tree is killed (``bwrap`` is killed; its init dies with it through
  ``--die-with-parent`` and the kernel kills every process of the pid namespace). The namespace also
  ends when the program's main process exits, so no child outlives the call;
- output capped per stream with a visible marker; a program that keeps writing far past the cap is
  killed.

Without ``bwrap``, ``prlimit`` or unprivileged user namespaces the sandbox is unavailable and says
how to fix that; code never runs outside it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..base import ToolError, ToolUnavailable

INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: apt-get install -y bubblewrap; Fedora: dnf install bubblewrap)"
"""How to make the sandbox available, quoted in every unavailability message."""

NOBODY = 65534
"""The uid and gid a sandbox started by root runs as."""

SANDBOX_UID = 1000
"""The uid (and gid) the code sees inside the sandbox."""

WORK_DIR = "/work"
"""The sandbox's fresh, empty work directory (its cwd and HOME)."""

CODE_DIR = "/sandbox"
"""Where the program's files are mounted, read-only (outside the work directory, which starts empty)."""

_PATH = "/usr/local/bin:/usr/bin:/bin"
_ROOT_ENTRIES = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_ETC_FILES = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "nsswitch.conf", "mime.types",
)
_DRAIN_FACTOR = 16
"""A stream read past this many times its cap gets the program killed (it would only burn CPU)."""


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """Resource limits of one sandboxed run.

    Attributes:
        wall_s: wall-clock time; past it the whole process tree is killed.
        cpu_s: CPU seconds per process (SIGXCPU, then SIGKILL one second later).
        memory_mb: data segment and anonymous memory per process (``RLIMIT_DATA``).
        max_processes: processes and threads inside the sandbox.
        file_size_mb: the largest file a process may write.
        work_dir_mb: the size of the work directory and of ``/tmp`` (each a tmpfs).
        max_open_files: file descriptors per process.
        max_output_bytes: what is kept of stdout and of stderr each; the rest is cut with a marker.
    """

    wall_s: float = 30.0
    cpu_s: int = 10
    memory_mb: int = 512
    max_processes: int = 64
    file_size_mb: int = 16
    work_dir_mb: int = 64
    max_open_files: int = 256
    max_output_bytes: int = 64 * 1024


@dataclass(frozen=True, slots=True)
class SandboxResult:
    """What a sandboxed program did.

    Attributes:
        stdout: its standard output (decoded as UTF-8, invalid bytes replaced), capped.
        stderr: its standard error, capped.
        exit_code: its exit status; 128 + N when signal N ended it (137: killed).
        duration_ms: wall time of the whole run, sandbox set-up included.
        timed_out: the wall-time limit was reached and the tree was killed.
        output_limited: it wrote so much past the output cap that it was killed.
        stdout_truncated: stdout was cut at the cap.
        stderr_truncated: stderr was cut at the cap.
        notes: what the limits did, in words (timeouts, CPU limit, killed by a signal, truncation).
    """

    stdout: str
    stderr: str
    exit_code: int
    duration_ms: float
    timed_out: bool = False
    output_limited: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, object]:
        """A JSON-able dict of every field."""
        return {
            "stdout": self.stdout, "stderr": self.stderr, "exit_code": self.exit_code,
            "duration_ms": round(self.duration_ms, 3), "timed_out": self.timed_out,
            "output_limited": self.output_limited, "stdout_truncated": self.stdout_truncated,
            "stderr_truncated": self.stderr_truncated, "notes": list(self.notes),
        }


class _Capped:
    """A stream's bytes, kept up to a cap and counted past it."""

    __slots__ = ("cap", "chunks", "kept", "total")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.chunks: list[bytes] = []
        self.kept = 0
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.cap - self.kept
        if room > 0:
            part = data[:room]
            self.chunks.append(part)
            self.kept += len(part)

    @property
    def truncated(self) -> bool:
        return self.total > self.kept

    def text(self) -> str:
        text = b"".join(self.chunks).decode("utf-8", errors="replace")
        if self.truncated:
            text += f"\n[loomiq: output truncated at {self.cap} bytes; {self.total - self.kept} more bytes dropped]"
        return text


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


@dataclass(slots=True)
class _Started:
    """A sandbox started ahead of its call, its ``sh`` waiting for a line on stdin (the go pipe)."""

    popen: subprocess.Popen[bytes]
    go: int
    status: int
    stdout: int
    stderr: int
    pidfd: int
    code_dir: str
    created: float

    def close(self) -> None:
        for fd in (self.go, self.status, self.stdout, self.stderr, self.pidfd):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self.code_dir, ignore_errors=True)

    def kill(self) -> None:
        # Killing bwrap kills its init (--die-with-parent), and with it the whole pid namespace.
        if self.popen.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                self.popen.kill()

    def discard(self) -> None:
        self.kill()
        with contextlib.suppress(subprocess.TimeoutExpired, ChildProcessError):
            self.popen.wait(timeout=5)
        self.close()


_GATE = 'read -r _ || exit 125; exec "$@" </dev/null'
"""What a started sandbox runs until its call: wait for the go byte, then become the program."""


class Sandbox:
    """Runs programs in fresh bubblewrap sandboxes (see the module docstring for what is isolated).

    Each sandbox serves one run. With `warm` > 0, that many sandboxes per program are started ahead
    (namespaces, mounts and an ``sh`` waiting on a pipe), so a call pays only for the program itself;
    a started sandbox is still used once, and its work directory is empty until its call.

    Args:
        limits: the limits of every run.
        warm: sandboxes kept started ahead, per program (0: start each at its call).
        bwrap: the ``bwrap`` binary (default: found on PATH).
        prlimit: the ``prlimit`` binary, which must also exist inside the sandbox under the same path
            (it is in ``/usr``).
        run_as: (uid, gid) that starts ``bwrap``; default: `NOBODY` when loomiq runs as root, else
            loomiq's own user.
    """

    def __init__(self, limits: SandboxLimits | None = None, *, warm: int = 2, bwrap: str | None = None,
                 prlimit: str | None = None, run_as: tuple[int, int] | None = None) -> None:
        self.limits = limits or SandboxLimits()
        self.warm = warm
        self.bwrap = bwrap or shutil.which("bwrap")
        self.prlimit = prlimit or shutil.which("prlimit", path="/usr/bin:/bin")
        if run_as is None and os.geteuid() == 0:
            run_as = (NOBODY, NOBODY)
        self.run_as = run_as
        self._probe: str | None | bool = False  # False: not probed; None: fine; str: why not
        self._probe_lock = threading.Lock()
        self._disable_userns = False
        self._root_layout = self._layout()
        self._pool: dict[tuple[str, ...], list[_Started]] = {}
        self._pool_lock = threading.Lock()
        _LIVE.add(self)

    def unavailable_reason(self) -> str | None:
        """Why no sandbox can start here, from what is visible without starting one (None: maybe fine).

        `check` then tries one for real.
        """
        if self.bwrap is None:
            return f"the sandbox needs bubblewrap ('bwrap' is not on PATH): {INSTALL_HINT}"
        if self.prlimit is None or not self.prlimit.startswith("/usr/"):
            return "the sandbox needs 'prlimit' under /usr (Debian/Ubuntu: apt-get install -y util-linux)"
        if isinstance(self._probe, str):
            return self._probe
        return None

    async def check(self) -> None:
        """Start one empty sandbox (once per `Sandbox`) and raise `ToolUnavailable` if that fails:
        bubblewrap missing, or user namespaces disabled in this kernel or container."""
        reason = self.unavailable_reason()
        if reason:
            raise ToolUnavailable(reason)
        if self._probe is False:
            await asyncio.to_thread(self._probe_once)
        if isinstance(self._probe, str):
            raise ToolUnavailable(self._probe)

    def _probe_once(self) -> None:
        with self._probe_lock:
            if self._probe is not False:
                return
            assert self.bwrap is not None
            _, helptext = _output([self.bwrap, "--help"], None)
            self._disable_userns = "--disable-userns" in helptext
            rc, out = _output([self.bwrap, *self._base_args(), "--", "/usr/bin/true"], self.run_as)
            if rc == 0:
                self._probe = None
                return
            detail = " ".join(out.split())[:300] or f"exit status {rc}"
            self._probe = (
                f"bubblewrap could not start a sandbox ({detail}); it needs unprivileged user namespaces "
                "(sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0; in a container, "
                f"allow them in its security profile). {INSTALL_HINT}"
            )

    @staticmethod
    def _layout() -> list[str]:
        """The read-only system, mirroring the host's root links (merged /usr) or directories."""
        args = ["--ro-bind", "/usr", "/usr"]
        for name in _ROOT_ENTRIES:
            path = Path("/") / name
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), f"/{name}"]
            elif path.is_dir():
                args += ["--ro-bind", str(path), f"/{name}"]
        for name in _ETC_FILES:
            if (Path("/etc") / name).exists():
                args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
        return args

    def _base_args(self) -> list[str]:
        args = ["--unshare-all", "--unshare-user"]
        if self._disable_userns:
            args.append("--disable-userns")
        return args + [
            "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "sandbox",
            *self._root_layout, "--proc", "/proc", "--dev", "/dev",
        ]

    def _limit_args(self) -> list[str]:
        mb = 1024 * 1024
        limits = self.limits
        assert self.prlimit is not None
        return [
            self.prlimit,
            f"--cpu={limits.cpu_s}:{limits.cpu_s + 1}",
            f"--data={limits.memory_mb * mb}",
            f"--nproc={limits.max_processes}",
            f"--fsize={limits.file_size_mb * mb}",
            f"--nofile={limits.max_open_files}",
            "--core=0",
            "--",
        ]

    def _start(self, argv: tuple[str, ...]) -> _Started:
        """Start a sandbox for `argv`, stopped at its gate until `run` sends the go byte."""
        assert self.bwrap is not None
        size = str(self.limits.work_dir_mb * 1024 * 1024)
        # Under /tmp, not $TMPDIR: bwrap runs as the sandbox's user, who must be able to reach it.
        code_dir = tempfile.mkdtemp(prefix="loomiq-sandbox-", dir="/tmp" if os.path.isdir("/tmp") else None)
        os.chmod(code_dir, 0o755)  # the sandbox's user reads its program from here
        go_r, go_w = os.pipe()
        status_r, status_w = os.pipe()
        etc: list[int] = []
        try:
            args = [self.bwrap, *self._base_args(), "--size", size, "--tmpfs", "/tmp",
                    "--size", size, "--tmpfs", WORK_DIR, "--ro-bind", code_dir, CODE_DIR]
            for dest, content in _ETC_DATA.items():
                fd = os.memfd_create("loomiq-sandbox-etc", os.MFD_CLOEXEC)
                etc.append(fd)
                os.write(fd, content)
                os.lseek(fd, 0, os.SEEK_SET)
                args += ["--ro-bind-data", str(fd), dest]
            # The sandbox's root is a tmpfs of its own, unlimited in size: read-only, like the system.
            args += ["--remount-ro", "/", "--chdir", WORK_DIR, "--clearenv"]
            for key, value in _ENV.items():
                args += ["--setenv", key, value]
            args += ["--json-status-fd", str(status_w), "--", "/bin/sh", "-c", _GATE, "sh",
                     *self._limit_args(), *argv]
            uid, gid = self.run_as if self.run_as else (None, None)
            # bwrap's own environment is what its init (pid 1 inside) shows in /proc/1/environ: keep it empty.
            popen = subprocess.Popen(
                args, stdin=go_r, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                pass_fds=[status_w, *etc], env={"PATH": _PATH}, cwd="/", start_new_session=True,
                user=uid, group=gid, extra_groups=[] if uid is not None else None,
            )
        except BaseException:
            for fd in (go_w, status_r):
                os.close(fd)
            shutil.rmtree(code_dir, ignore_errors=True)
            raise
        finally:
            for fd in (go_r, status_w, *etc):
                os.close(fd)
        assert popen.stdout is not None and popen.stderr is not None
        stdout, stderr = os.dup(popen.stdout.fileno()), os.dup(popen.stderr.fileno())
        popen.stdout.close()
        popen.stderr.close()
        for fd in (stdout, stderr, status_r):
            os.set_blocking(fd, False)
        return _Started(popen, go_w, status_r, stdout, stderr, os.pidfd_open(popen.pid), code_dir,
                        time.monotonic())

    def _take(self, argv: tuple[str, ...]) -> _Started:
        with self._pool_lock:
            pool = self._pool.get(argv, [])
            while pool:
                started = pool.pop(0)
                if started.popen.poll() is None:
                    return started
                started.close()  # it died waiting (its parent thread exited, say): never reuse
        return self._start(argv)

    def _refill(self, argv: tuple[str, ...]) -> None:
        with self._pool_lock:
            missing = self.warm - len(self._pool.setdefault(argv, []))
        for _ in range(max(0, missing)):
            try:
                started = self._start(argv)
            except OSError:
                return
            with self._pool_lock:
                self._pool[argv].append(started)

    def close(self) -> None:
        """Kill the sandboxes started ahead (also done at interpreter exit)."""
        with self._pool_lock:
            pools, self._pool = list(self._pool.values()), {}
        for pool in pools:
            for started in pool:
                started.discard()

    async def run(self, argv: Sequence[str], files: Mapping[str, bytes] | None = None) -> SandboxResult:
        """Run `argv` in a fresh sandbox and return what it did.

        Args:
            argv: the program and its arguments, resolved on the sandbox's PATH.
            files: read-only files the program finds under `CODE_DIR`, by name (its source).

        Raises:
            ToolUnavailable: no sandbox can start here.
            ToolError: the sandbox could not be set up for this run (bubblewrap's message).
        """
        await self.check()
        key = tuple(argv)
        started = self._take(key)
        loop = asyncio.get_running_loop()
        try:
            for name, content in (files or {}).items():
                if "/" in name or name in ("", ".", ".."):
                    raise ValueError(f"a sandbox file name is one path component, not {name!r}")
                _write_file(os.path.join(started.code_dir, name), content)
            began = time.perf_counter()
            with contextlib.suppress(BrokenPipeError):
                os.write(started.go, b"\n")
            os.close(started.go)
            started.go = -1
            return await self._collect(started, loop, began)
        finally:
            started.kill()
            with contextlib.suppress(subprocess.TimeoutExpired, ChildProcessError):
                started.popen.wait(timeout=5)
            started.close()
            if self.warm:
                # After the call, not during it: starting a sandbox would compete with it for the CPU.
                loop.call_soon(self._refill, key)

    async def _collect(self, started: _Started, loop: asyncio.AbstractEventLoop, began: float) -> SandboxResult:
        limits = self.limits
        out, err = _Capped(limits.max_output_bytes), _Capped(limits.max_output_bytes)
        finished = loop.create_future()
        pending = {started.stdout, started.stderr, started.pidfd}
        flooded = False

        def settle(fd: int) -> None:
            loop.remove_reader(fd)
            pending.discard(fd)
            if not pending and not finished.done():
                finished.set_result(None)

        def on_output(fd: int, sink: _Capped) -> None:
            nonlocal flooded
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                settle(fd)
                return
            sink.add(data)
            if sink.total > sink.cap * _DRAIN_FACTOR and not flooded:
                flooded = True
                started.kill()

        loop.add_reader(started.stdout, on_output, started.stdout, out)
        loop.add_reader(started.stderr, on_output, started.stderr, err)
        loop.add_reader(started.pidfd, settle, started.pidfd)
        timed_out = False
        try:
            try:
                await asyncio.wait_for(asyncio.shield(finished), timeout=limits.wall_s)
            except TimeoutError:
                timed_out = not flooded
                started.kill()
                # The namespace dies with bwrap, so the pipes reach EOF at once.
                await asyncio.wait_for(finished, timeout=5.0)
        finally:
            for fd in list(pending):
                loop.remove_reader(fd)
        returncode = started.popen.wait(timeout=5)
        duration_ms = (time.perf_counter() - began) * 1000
        return _result(returncode, _read_status(started.status), out, err, duration_ms, timed_out, flooded, limits)


_LIVE: weakref.WeakSet[Sandbox] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for sandbox in list(_LIVE):
        sandbox.close()


_ENV = {"PATH": _PATH, "HOME": WORK_DIR, "TMPDIR": "/tmp", "LANG": "C.UTF-8", "USER": "sandbox", "LOGNAME": "sandbox"}
_ETC_DATA = {
    "/etc/passwd": f"sandbox:x:{SANDBOX_UID}:{SANDBOX_UID}:sandbox:{WORK_DIR}:/bin/sh\n".encode(),
    "/etc/group": f"sandbox:x:{SANDBOX_UID}:\n".encode(),
}


def _result(returncode: int | None, status: dict[str, int], out: _Capped, err: _Capped, duration_ms: float,
            timed_out: bool, flooded: bool, limits: SandboxLimits) -> SandboxResult:
    notes: list[str] = []
    if "exit-code" in status:
        exit_code = status["exit-code"]
    elif timed_out or flooded:
        exit_code = 128 + signal.SIGKILL
    elif "child-pid" not in status:
        # bwrap failed before starting the program: its own message is on stderr.
        message = " ".join(err.text().split())[:500]
        raise ToolError(f"the sandbox could not be set up: {message or f'bwrap exit status {returncode}'}")
    else:
        exit_code = returncode if returncode is not None else -1
    if timed_out:
        notes.append(f"killed: wall time limit of {limits.wall_s:g} s reached (the whole process tree was killed)")
    elif flooded:
        notes.append(f"killed: it wrote more than {_DRAIN_FACTOR}x the output limit of "
                     f"{limits.max_output_bytes} bytes")
    elif exit_code > 128:
        sig = exit_code - 128
        if sig == signal.SIGXCPU:
            notes.append(f"killed: CPU time limit of {limits.cpu_s} s reached")
        elif sig == signal.SIGKILL:
            notes.append(f"ended by SIGKILL (the CPU time limit's hard stop at {limits.cpu_s + 1} s, or the kernel)")
        elif sig == signal.SIGXFSZ:
            notes.append(f"killed: file size limit of {limits.file_size_mb} MB reached")
        else:
            notes.append(f"ended by {_signal_name(sig)}")
    if out.truncated:
        notes.append(f"stdout truncated at {limits.max_output_bytes} bytes")
    if err.truncated:
        notes.append(f"stderr truncated at {limits.max_output_bytes} bytes")
    return SandboxResult(
        stdout=out.text(), stderr=err.text(), exit_code=exit_code, duration_ms=duration_ms,
        timed_out=timed_out, output_limited=flooded, stdout_truncated=out.truncated,
        stderr_truncated=err.truncated, notes=tuple(notes),
    )


def _read_status(fd: int) -> dict[str, int]:
    """bwrap's ``--json-status-fd`` lines (child-pid, then exit-code), merged."""
    chunks = []
    os.set_blocking(fd, False)
    with contextlib.suppress(BlockingIOError, OSError):
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    status: dict[str, int] = {}
    for line in b"".join(chunks).decode(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            data = json.loads(line)
            if isinstance(data, dict):
                status.update({k: v for k, v in data.items() if isinstance(v, int)})
    return status


def _write_file(path: str, content: bytes) -> None:
    # A small file in a local temporary directory: page cache, no reason to leave the loop's thread.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _output(argv: list[str], run_as: tuple[int, int] | None) -> tuple[int, str]:
    uid, gid = run_as if run_as else (None, None)
    try:
        proc = subprocess.run(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={"PATH": _PATH},
            cwd="/", start_new_session=True, user=uid, group=gid, extra_groups=[] if uid is not None else None,
            timeout=20, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return proc.returncode, proc.stdout.decode(errors="replace")


__all__ = ["CODE_DIR", "INSTALL_HINT", "NOBODY", "WORK_DIR", "Sandbox", "SandboxLimits", "SandboxResult"]
