"""Development reload (`gigq worker --reload`): restart the job processes when the code they
run changes.

A worker's job processes are forked from it and keep the modules they imported, so without
this a worker runs the code it started with. Here a thread watches the folders user code is
imported from (the current directory and the import path, less the interpreter's own and
installed packages) with `watchfiles`, the watcher uvicorn's `--reload` uses: an optional
extra (`pip install 'gigq[reload]'`), imported only when asked for. On a change to a Python
file the worker replaces its children: idle ones at once, busy ones when their job ends (a
running job is never interrupted, nor handed back), and the modules loaded from those
folders are forgotten first, so the new children import them again.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gigq_core.errors import ConfigError

if TYPE_CHECKING:
    from gigq_core.worker import Worker

log = logging.getLogger("gigq")

#: GigQ's own packages: never forgotten, whatever folder they were loaded from (a worker
#: started in GigQ's source tree must not end up with two copies of its own classes).
_OWN = ("gigq", "gigq_core", "gigq_sql", "gigq_sqlite", "gigq_cli")
#: Folder names of installed packages.
_INSTALLED = frozenset({"site-packages", "dist-packages"})


def require_watchfiles() -> None:
    """Refuse (ConfigError, one sentence) when the watchfiles package is not installed."""
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--reload needs the watchfiles package: pip install 'gigq[reload]' "
            "(or pip install watchfiles)"
        ) from None


def python_prefixes() -> tuple[str, ...]:
    """The interpreter's and the virtual environment's folders (the standard library,
    installed packages, console scripts)."""
    found = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    return tuple(os.path.realpath(p) for p in found if p)


def _under(path: str, folders: Iterable[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip(os.sep) + os.sep) for f in folders)


def is_user_path(path: str, prefixes: Sequence[str]) -> bool:
    """Whether `path` may hold user code: not the interpreter's nor an installed package."""
    return not _under(path, prefixes) and not _INSTALLED & set(Path(path).parts)


def code_folders(paths: Iterable[str] | None = None) -> list[str]:
    """The folders user code is imported from: the current directory and each folder of
    `paths` (default: `sys.path`) that is neither the interpreter's nor installed packages'
    (an editable install's source folder counts); none inside another one."""
    cwd = os.getcwd()
    prefixes = python_prefixes()
    found: list[str] = []
    for entry in [cwd, *(sys.path if paths is None else paths)]:
        path = os.path.realpath(entry or cwd)
        if os.path.isdir(path) and is_user_path(path, prefixes) and path not in found:
            found.append(path)
    return [path for path in found if not _under(path, [f for f in found if f != path])]


def forget_modules(folders: Sequence[str]) -> list[str]:
    """Drop from `sys.modules` the modules loaded from under `folders` (not `__main__`,
    GigQ's own or installed ones), so the next import reads them again; their names.
    Objects that refer to them keep the old module."""
    if not folders:
        return []
    prefixes = python_prefixes()
    dropped = []
    for name, module in list(sys.modules.items()):
        if name == "__main__" or name.partition(".")[0] in _OWN:
            continue
        file = getattr(module, "__file__", None)
        if not isinstance(file, str):
            continue
        path = os.path.realpath(file)
        if _under(path, folders) and is_user_path(path, prefixes):
            del sys.modules[name]
            dropped.append(name)
    importlib.invalidate_caches()
    return dropped


def _drop_bytecode(path: str) -> None:
    """Remove the cached bytecode of a changed source file: Python checks a `.pyc` by the
    source's size and modification time in whole seconds, so an edit of the same size within
    the second it was cached (by `gigq submit`, say) would run the old code."""
    if path.endswith(".py"):
        with contextlib.suppress(OSError, ValueError):
            os.unlink(importlib.util.cache_from_source(path))


class CodeWatcher(threading.Thread):
    """Watches `folders` and has `worker` restart its job processes when a Python file in
    them changes (`Worker.reload`)."""

    def __init__(self, worker: Worker, folders: Sequence[str]) -> None:
        super().__init__(name="gigq-reload", daemon=True)
        self.worker = worker
        self.folders = tuple(folders)
        self.done = threading.Event()

    def run(self) -> None:
        from watchfiles import PythonFilter, watch

        try:
            for changes in watch(
                *self.folders,
                watch_filter=PythonFilter(),
                stop_event=self.done,
                raise_interrupt=False,
            ):
                paths = sorted({path for _, path in changes})
                for path in paths:
                    _drop_bytecode(path)
                # Before the log line: a job submitted after it runs the new code.
                self.worker.reload(self.folders)
                log.info(
                    "worker %s: %s changed; job processes restart with the new code "
                    "(a running job finishes first)",
                    self.worker.worker_id,
                    ", ".join(_shown(path, self.folders) for path in paths[:5])
                    + (f" and {len(paths) - 5} more" if len(paths) > 5 else ""),
                )
        except Exception as err:  # the worker goes on, without reloading
            log.error(
                "worker %s: --reload stopped watching for changes: %s", self.worker.worker_id, err
            )

    def stop(self) -> None:
        """End the thread (within watchfiles' step, 50 ms) and wait for it."""
        self.done.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(5)


def _shown(path: str, folders: Sequence[str]) -> str:
    """`path` relative to the folder it is in."""
    for folder in folders:
        if _under(path, [folder]):
            return os.path.relpath(path, folder)
    return path


__all__ = [
    "CodeWatcher",
    "code_folders",
    "forget_modules",
    "is_user_path",
    "python_prefixes",
    "require_watchfiles",
]
