"""Resolving a path under a root directory without ever leaving it: the machinery of the `files` tool.

A path is first checked as text (relative, no ``..``, no NUL, normalized), then resolved one
component at a time with ``openat`` relative to directory file descriptors held open, every component
opened with ``O_NOFOLLOW``. A symlink met on the way is read (``readlinkat``) and its target resolved
the same way, from the directory that holds it: a target that is absolute or climbs above the root is
refused. Because every step is relative to a descriptor already checked, swapping a directory or a
file for a symlink between a check and the open cannot redirect it outside (the open fails instead):
the same guarantee as Linux's ``openat2(RESOLVE_BENEATH)``, written with calls Python has.

Files are opened with ``O_NOFOLLOW | O_NONBLOCK`` and checked with ``fstat`` after the open: only
regular files, and only files with one link (a hard link may be a second name of a file outside).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass

MAX_SYMLINKS = 40
"""Symlinks followed while resolving one path (Linux's own limit)."""

_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class PathRefused(ValueError):
    """A path that is not allowed (outside the root, a link escape, a device...): the message says why."""


class PathMissing(FileNotFoundError):
    """A path that does not exist under the root."""


def normalize(path: str, *, max_length: int = 4096) -> str:
    """The workspace-relative form of `path` (``""`` for the root), or `PathRefused`.

    Refused: absolute paths, ``..`` components, NUL, backslashes, and paths over `max_length`.
    """
    if not isinstance(path, str):
        raise PathRefused("the path must be a string")
    if "\0" in path:
        raise PathRefused("the path contains a NUL character")
    if len(path) > max_length:
        raise PathRefused(f"the path is longer than {max_length} characters")
    if path.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", path) or "\\" in path:
        raise PathRefused(f"{path!r} is absolute; give a path relative to the workspace")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PathRefused(f"{path!r} contains '..'; give a path inside the workspace")
    return "/".join(parts)


@dataclass(slots=True)
class Resolved:
    """A path resolved under the root: the directory that holds it (an fd) and its last name.

    `name` is ``""`` when the path is the root itself. `path` is the normalized path the resolution
    actually reached (symlinks inside the root replaced by their targets).
    """

    dir_fd: int
    name: str
    path: str


class Root:
    """An open workspace root; resolve paths under it with `resolve`. Close it (a context manager)."""

    def __init__(self, path: str) -> None:
        os.makedirs(path, mode=0o700, exist_ok=True)
        self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._fds: list[int] = []

    def close(self) -> None:
        """Close the root and every directory opened under it."""
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        os.close(self.fd)

    def __enter__(self) -> Root:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_dir(self, name: str, parent: int) -> int:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        self._fds.append(fd)
        return fd

    def resolve(self, path: str, *, create_dirs: bool = False) -> Resolved:
        """Resolve the normalized `path`; intermediate directories are created when `create_dirs`.

        Raises:
            PathRefused: a symlink leads outside the root (or loops), or a component is not a directory.
            PathMissing: a directory on the way does not exist (and `create_dirs` is false).
        """
        stack: list[tuple[str, int]] = []  # (name, fd) of each directory entered below the root
        todo = [p for p in path.split("/") if p]
        hops = 0
        while todo:
            part = todo.pop(0)
            if part in ("", "."):
                continue
            if part == "..":  # only from a symlink's target
                if not stack:
                    raise PathRefused(f"{path!r} leads outside the workspace through a symlink")
                stack.pop()
                continue
            cur = stack[-1][1] if stack else self.fd
            try:
                st = os.stat(part, dir_fd=cur, follow_symlinks=False)
            except FileNotFoundError:
                if todo and create_dirs:
                    os.mkdir(part, 0o700, dir_fd=cur)
                    st = os.stat(part, dir_fd=cur, follow_symlinks=False)
                elif todo:
                    raise PathMissing(f"{path!r}: directory {part!r} does not exist") from None
                else:
                    return Resolved(cur, part, "/".join([n for n, _ in stack] + [part]))
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise PathRefused(f"{path!r}: too many symlinks")
                target = os.readlink(part, dir_fd=cur)
                if target.startswith("/"):
                    raise PathRefused(f"{path!r} leads outside the workspace through a symlink")
                todo = [p for p in target.split("/") if p] + todo
                continue
            if not todo:
                return Resolved(cur, part, "/".join([n for n, _ in stack] + [part]))
            if not stat.S_ISDIR(st.st_mode):
                raise PathRefused(f"{path!r}: {part!r} is not a directory")
            try:
                stack.append((part, self._open_dir(part, cur)))
            except OSError as exc:
                # Swapped for a symlink (ELOOP) or a file (ENOTDIR) since the stat: refuse, never follow.
                raise PathRefused(f"{path!r} changed while it was resolved ({exc.strerror})") from None
        if not stack:
            return Resolved(self.fd, "", "")
        name, _ = stack.pop()
        parent = stack[-1][1] if stack else self.fd
        return Resolved(parent, name, "/".join([n for n, _ in stack] + [name]))


def check_regular(st: os.stat_result, path: str) -> None:
    """Refuse anything but a regular file with one link (devices, FIFOs, sockets, hard links)."""
    if stat.S_ISDIR(st.st_mode):
        raise PathRefused(f"{path!r} is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise PathRefused(f"{path!r} is not a regular file (device, FIFO or socket)")
    if st.st_nlink > 1:
        raise PathRefused(f"{path!r} has {st.st_nlink} hard links; files with more than one are refused")


def open_file(res: Resolved, flags: int, mode: int = 0o600) -> int:
    """Open the resolved file (never through a symlink, never blocking on a FIFO) and check it."""
    try:
        fd = os.open(res.name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY, mode,
                     dir_fd=res.dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PathRefused(f"{res.path!r} changed while it was resolved (now a symlink)") from None
        if exc.errno == errno.ENOENT:
            raise PathMissing(f"{res.path!r} does not exist") from None
        if exc.errno == errno.EISDIR:
            raise PathRefused(f"{res.path!r} is a directory") from None
        raise
    try:
        check_regular(os.fstat(fd), res.path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_dir(root: Root, res: Resolved) -> int:
    """An fd (O_RDONLY) of the resolved directory, for listing."""
    if not res.name:
        return os.dup(root.fd)
    try:
        return os.open(res.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=res.dir_fd)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise PathMissing(f"{res.path!r} does not exist") from None
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            raise PathRefused(f"{res.path!r} is not a directory") from None
        raise


def walk(dir_fd: int, prefix: str, *, limit: int) -> Iterator[tuple[str, os.DirEntry[str], int]]:
    """(relative path, entry, parent fd) of everything under `dir_fd`, depth first, never through a
    symlink, at most `limit` entries. The parent fd is valid while the entry is being handled."""
    count = 0
    pending: list[tuple[int, str]] = [(dir_fd, prefix)]
    opened: list[int] = []
    try:
        while pending:
            fd, base = pending.pop()
            with os.scandir(fd) as it:
                entries = sorted(it, key=lambda e: e.name)
            subdirs = []
            for entry in entries:
                count += 1
                if count > limit:
                    return
                rel = f"{base}/{entry.name}" if base else entry.name
                yield rel, entry, fd
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append((entry.name, rel))
            for name, rel in reversed(subdirs):
                try:
                    sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                except OSError:
                    continue  # swapped for something else meanwhile: skipped, never followed
                opened.append(sub)
                pending.append((sub, rel))
    finally:
        for fd in opened:
            os.close(fd)


__all__ = ["MAX_SYMLINKS", "PathMissing", "PathRefused", "Resolved", "Root", "check_regular", "normalize",
           "open_dir", "open_file", "walk"]
