"""Which database files to trust: whoever can write a GigQ database (or the `-wal` and
`-shm` files SQLite reads with it) can make its workers run code.

Two levels. Every open refuses journal files (`-wal`, `-shm`) that another user planted
beside the database: SQLite folds a `-wal` into what it reads, and checkpoints it into the
database on close, so even `gigq list` would make a planted job real. A worker, which runs
what it reads, also requires that the database and its journal files belong to the user it
runs as and are writable by nobody else, and that nobody else can replace them (their
folder is not writable by group or others, unless the user owns it).
"""

from __future__ import annotations

import os
import stat

from gigq_core.errors import PermissionDeniedError

#: The journal files SQLite keeps beside a database in WAL mode.
JOURNAL_SUFFIXES = ("-wal", "-shm")


def owner(uid: int) -> str:
    """A user's name and uid: "nobody (uid 65534)"."""
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def journal_problems(path: str) -> list[str]:
    """Journal files of the database at `path` that its owner did not make: owned by
    another user, writable by more users than the database is, or not regular files."""
    real = os.path.realpath(path)
    database = _lstat(real)
    if database is None:
        return []
    problems = []
    for suffix in JOURNAL_SUFFIXES:
        journal = real + suffix
        info = _lstat(journal)
        if info is None:
            continue
        if not stat.S_ISREG(info.st_mode):
            problems.append(f"{journal} is not a regular file")
        elif info.st_uid != database.st_uid:
            problems.append(
                f"{journal} is owned by {owner(info.st_uid)}, not by the database's owner "
                f"{owner(database.st_uid)}"
            )
        elif info.st_mode & 0o022 & ~database.st_mode:
            problems.append(
                f"{journal} is writable by group or others "
                f"({oct(info.st_mode & 0o777)}) and the database is not"
            )
    return problems


def check_journals(path: str) -> None:
    """Refuse to open a database beside journal files another user may have planted."""
    problems = journal_problems(path)
    if problems:
        raise PermissionDeniedError(
            f"refusing to open {path}: {'; '.join(problems)}. Another user may have planted "
            "it to inject jobs; check it, remove it if it is not yours, or set "
            "allow_insecure_permissions"
        )


def check_new_file(path: str) -> None:
    """Refuse to initialise an existing empty file that another user made, or that others
    may write: they could make it a database of their jobs."""
    info = _lstat(os.path.realpath(path))
    if info is None:
        return
    me = os.geteuid()
    if info.st_uid != me:
        raise PermissionDeniedError(
            f"refusing to use {path}: the empty file is owned by {owner(info.st_uid)}, not "
            f"by {owner(me)}; remove it, or set allow_insecure_permissions"
        )
    if info.st_mode & 0o022:
        raise PermissionDeniedError(
            f"refusing to use {path}: the empty file is writable by group or others "
            f"({oct(info.st_mode & 0o777)}); chmod 600 {path}, or set "
            "allow_insecure_permissions"
        )


def run_problems(path: str) -> list[str]:
    """Why the database at `path` is unsafe to run jobs from, for a worker running as this
    process's effective user; empty when it is safe."""
    me = os.geteuid()
    real = os.path.realpath(path)
    problems = []
    for file in (real, *(real + suffix for suffix in JOURNAL_SUFFIXES)):
        info = _lstat(file)
        if info is None:
            continue
        if not stat.S_ISREG(info.st_mode):
            problems.append(f"{file} is not a regular file")
            continue
        if info.st_uid != me:
            problems.append(
                f"{file} is owned by {owner(info.st_uid)}, not by {owner(me)}, who runs "
                f"the jobs: chown {owner_name(me)} {file}"
            )
        if info.st_mode & 0o022:
            problems.append(
                f"{file} is writable by group or others ({oct(info.st_mode & 0o777)}), so "
                f"they could make workers run any allowed function: chmod 600 {file}"
            )
    problem = folder_problem(real, me)
    if problem:
        problems.append(problem)
    return problems


def folder_problem(real: str, me: int) -> str | None:
    """Why the folder of the database file `real` lets another user replace or plant its
    files: writable by group or others and not owned by `me` (a sticky bit does not help:
    others may still create the journal files before SQLite does)."""
    folder = os.path.dirname(real) or "."
    try:
        info = os.stat(folder)
    except OSError:
        return None
    if info.st_mode & 0o022 and info.st_uid != me:
        sticky = " (sticky)" if info.st_mode & stat.S_ISVTX else ""
        return (
            f"the folder {folder} is writable by group or others "
            f"({oct(info.st_mode & 0o7777)}{sticky}) and owned by {owner(info.st_uid)}, so "
            "another user could plant or replace the database's files: move the database to "
            "a folder you own"
        )
    return None


def owner_name(uid: int) -> str:
    """A user's name, or the uid when it has none."""
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


__all__ = [
    "check_journals",
    "check_new_file",
    "folder_problem",
    "journal_problems",
    "owner",
    "run_problems",
]
