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

#: The files SQLite reads beside a database: the WAL and its index, and a rollback journal
#: (a "hot" `-journal` is replayed into the database when it is opened, before any mode is
#: set, so a planted one could replace every job).
JOURNAL_SUFFIXES = ("-wal", "-shm", "-journal")


def owner(uid: int) -> str:
    """A user's name and uid: "nobody (uid 65534)", or "uid 1234" for a user with no name."""
    name = owner_name(uid)
    return f"uid {uid}" if name == str(uid) else f"{name} (uid {uid})"


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
    files (a journal SQLite would replay, say): the folder belongs to someone other than
    `me` or root, or others may write it. A sticky bit does not help (others may still
    create the files not made yet), nor does being its owner; a group may write it only
    when it is the user's own private group."""
    folder = os.path.dirname(real) or "."
    try:
        info = os.stat(folder)
    except OSError:
        return None
    mode = info.st_mode
    shown = f"{folder} ({oct(mode & 0o7777)}, owned by {owner(info.st_uid)})"
    if info.st_uid not in (me, 0):
        return (
            f"the folder {shown} belongs to another user, who could plant or replace the "
            "database's files: move the database to a folder you own"
        )
    if mode & 0o002 or (mode & 0o020 and not _private_group(info.st_gid, me)):
        return (
            f"the folder {shown} is writable by group or others, so another user could "
            f"plant or replace the database's files: chmod go-w {folder}, or move the "
            "database to a folder only you can write"
        )
    return None


def _private_group(gid: int, uid: int) -> bool:
    """Whether `gid` is the user's own group, with no other members (the user-private
    groups of Debian and Fedora, where a umask of 002 makes folders group-writable)."""
    try:
        import grp
        import pwd

        group, user = grp.getgrgid(gid), pwd.getpwuid(uid)
    except (ImportError, KeyError):
        return False
    return (
        group.gr_name == user.pw_name
        and user.pw_gid == gid
        and not set(group.gr_mem) - {user.pw_name}
    )


def check_link(path: str) -> None:
    """Refuse to create a database through a symlink another user made: it would let them
    choose where the database lives (a folder of theirs, where they can plant files)."""
    try:
        info = os.lstat(path)
    except OSError:
        return
    me = os.geteuid()
    if stat.S_ISLNK(info.st_mode) and info.st_uid not in (me, 0):
        raise PermissionDeniedError(
            f"refusing to use {path}: it is a symlink made by {owner(info.st_uid)}, not by "
            f"{owner(me)}; remove it, or set allow_insecure_permissions"
        )


def owner_name(uid: int) -> str:
    """A user's name, or the uid when it has none."""
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


__all__ = [
    "check_journals",
    "check_link",
    "check_new_file",
    "folder_problem",
    "journal_problems",
    "owner",
    "owner_name",
    "run_problems",
]
