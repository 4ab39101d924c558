"""Storage faults made real (docs/guarantees.md), where test_storage_faults.py simulates
them: permission denied as the unprivileged user `nobody`, a full disk on a small tmpfs
mounted for the test, and I/O errors from an LD_PRELOAD shim compiled here that makes
`write`/`pwrite` or `fsync`/`fdatasync` fail on the database's files.

Each fault gives its documented exit code (D10: 77 permission or read-only, 74 I/O error
or disk full) with one sentence and no traceback, changes nothing in the database, and
keeps every committed job; an outcome whose commit meets the fault leaves its job `running`
under its lease until it is rescued and run again, never lost.

These need root (to switch users and to mount) and gcc (for the shim); without them they
skip and say why.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gigq_core import Job, JobQueue, make_plugin_manager
from gigq_core.errors import DiskFullError
from tests.process._harness import (
    ROOT,
    Fleet,
    environment,
    job_row,
    stop,
    wait_until,
)
from tests.process.chaos_jobs import record

pwd = pytest.importorskip("pwd")

pytestmark = [pytest.mark.process, pytest.mark.timeout(60)]

#: Size of the tmpfs a disk-full test mounts.
DISK_SIZE = 4 * 1024 * 1024

#: The shim: descriptors opened (open/openat) on a path containing $FAULT_MARKER are
#: watched; the calls named in $FAULT_OPS ("write", "fsync") on them fail with $FAULT_ERRNO
#: (default EIO) once $FAULT_AFTER of them (default 0) have succeeded, and only while the
#: file $FAULT_ARMED exists when that is set.
SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#define MAX_FD 4096
static volatile char watched[MAX_FD];
static long counted;

static const char *env(const char *name) {
    const char *value = getenv(name);
    return value && *value ? value : NULL;
}

static void watch(int fd, const char *path) {
    const char *marker = env("FAULT_MARKER");
    if (fd >= 0 && fd < MAX_FD)
        watched[fd] = marker && path && strstr(path, marker) != NULL;
}

static int fails(int fd, const char *op) {
    const char *ops = env("FAULT_OPS"), *armed = env("FAULT_ARMED");
    const char *after = env("FAULT_AFTER"), *code = env("FAULT_ERRNO");
    if (fd < 0 || fd >= MAX_FD || !watched[fd] || !ops || !strstr(ops, op)) return 0;
    if (armed && access(armed, F_OK) != 0) return 0;
    if (__sync_fetch_and_add(&counted, 1) < (after ? atol(after) : 0)) return 0;
    errno = code ? atoi(code) : EIO;
    return 1;
}

#define NEXT(name) static __typeof__(name) *next; if (!next) next = dlsym(RTLD_NEXT, #name)
#define MODE(flags) mode_t mode = 0; if ((flags) & (O_CREAT | O_TMPFILE)) { \
    va_list ap; va_start(ap, flags); mode = va_arg(ap, mode_t); va_end(ap); }

int open(const char *path, int flags, ...) {
    MODE(flags); NEXT(open); int fd = next(path, flags, mode); watch(fd, path); return fd;
}
int open64(const char *path, int flags, ...) {
    MODE(flags); NEXT(open64); int fd = next(path, flags, mode); watch(fd, path); return fd;
}
int openat(int dir, const char *path, int flags, ...) {
    MODE(flags); NEXT(openat); int fd = next(dir, path, flags, mode); watch(fd, path);
    return fd;
}
int openat64(int dir, const char *path, int flags, ...) {
    MODE(flags); NEXT(openat64); int fd = next(dir, path, flags, mode); watch(fd, path);
    return fd;
}
int close(int fd) {
    NEXT(close); if (fd >= 0 && fd < MAX_FD) watched[fd] = 0; return next(fd);
}
ssize_t write(int fd, const void *buf, size_t n) {
    NEXT(write); return fails(fd, "write") ? -1 : next(fd, buf, n);
}
ssize_t pwrite(int fd, const void *buf, size_t n, off_t at) {
    NEXT(pwrite); return fails(fd, "write") ? -1 : next(fd, buf, n, at);
}
ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t at) {
    NEXT(pwrite64); return fails(fd, "write") ? -1 : next(fd, buf, n, at);
}
int fsync(int fd) { NEXT(fsync); return fails(fd, "fsync") ? -1 : next(fd); }
int fdatasync(int fd) { NEXT(fdatasync); return fails(fd, "fsync") ? -1 : next(fd); }
"""


# -- jobs a worker runs (public, so a worker imports them by name) ----------------------------


def spoil_once(ledger: str, once: str, size: int, filler: str = "", armed: str = "") -> str:
    """Record this execution; on the first one only, bring the fault about (fill the file
    system holding `filler`, or create `armed` for the shim); return `size` bytes of text,
    a result whose commit then needs room the disk no longer has."""
    record(ledger)
    try:
        os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return "r" * size
    if filler:
        fill(Path(filler))
    if armed:
        Path(armed).touch()
    return "r" * size


# -- helpers -------------------------------------------------------------------------------


def fill(path: Path) -> int:
    """Append to `path` until its file system is full; returns the bytes written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    written = 0
    try:
        while True:
            written += os.write(fd, b"\0" * 65536)
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)
    return written


def make_queue(db: Path, count: int, queue: str = "default") -> list[str]:
    """A database with `count` committed jobs (closed: no -wal or -shm left)."""
    pm = make_plugin_manager(load_entrypoints=False)
    with JobQueue(str(db), plugin_manager=pm) as jobs:
        return jobs.submit_many(
            [
                Job(f"j{n}", "tests.jobs:echo", params={"n": n, "pad": "p" * 500}, queue=queue)
                for n in range(count)
            ]
        )


def job_rows(db: Path) -> dict[str, dict[str, Any]]:
    """Every job row by id, read by root with plain sqlite3 (a connection that may write:
    when it is the last one, closing it removes the -wal and -shm files it made)."""
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return {row["id"]: dict(row) for row in conn.execute("SELECT * FROM jobs")}
    finally:
        conn.close()


def dump(db: Path) -> list[str]:
    """The whole database as SQL, read by root (as `job_rows` reads): what "nothing
    changed" compares."""
    conn = sqlite3.connect(db)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def quick_check(db: Path) -> str:
    """PRAGMA quick_check through a plain connection."""
    conn = sqlite3.connect(db)
    try:
        return str(conn.execute("PRAGMA quick_check").fetchone()[0])
    finally:
        conn.close()


def assert_kept(db: Path, before: dict[str, dict[str, Any]]) -> None:
    """Every job of `before` is there with the same row, no refused job got in, and the
    database checks out."""
    assert quick_check(db) == "ok"
    after = job_rows(db)
    assert {job_id: after.get(job_id) for job_id in before} == before
    assert not [row for row in after.values() if row["name"] == "refused"]


def gigq(
    db: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m gigq_cli --db DB ARGS` in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "gigq_cli", "--db", str(db), *args],
        cwd=ROOT,
        env=environment(**(env or {})),
        capture_output=True,
        text=True,
        timeout=30,
    )


def assert_one_sentence(result: subprocess.CompletedProcess[str], code: int, says: str) -> None:
    """Exit `code`, and on stderr one line, an error saying `says`, with no traceback."""
    shown = f"exit {result.returncode}\nstderr: {result.stderr}\nstdout: {result.stdout}"
    assert result.returncode == code, shown
    assert "Traceback" not in result.stderr, shown
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), shown
    assert says in lines[0], shown


def summary(name: str, started: float, **counts: object) -> None:
    """The one-line summary."""
    fields = " ".join(f"{key}={value}" for key, value in counts.items())
    print(f"[real-fault {name}] {fields} time={time.monotonic() - started:.1f}s")


# -- permission denied, as nobody ----------------------------------------------------------


@pytest.fixture(scope="module")
def nobody() -> tuple[int, int]:
    """The uid and gid of `nobody`, once this machine can run GigQ as that user."""
    if os.geteuid() != 0:
        pytest.skip("running commands as another user (setpriv) needs root")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is missing: cannot run commands as another user")
    try:
        user = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("there is no user `nobody` to run commands as")
    ids = (user.pw_uid, user.pw_gid)
    probe = subprocess.run(
        [*setpriv(ids), sys.executable, "-c", "import gigq_cli"],
        cwd="/",
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode:
        pytest.skip(f"nobody cannot run {sys.executable} with GigQ: {probe.stderr.strip()}")
    return ids


def setpriv(ids: tuple[int, int]) -> list[str]:
    """The command prefix that runs a command as the user `ids` (uid, gid), no groups."""
    return ["setpriv", f"--reuid={ids[0]}", f"--regid={ids[1]}", "--clear-groups"]


@pytest.fixture
def folder() -> Iterator[Path]:
    """A folder root owns and nobody may enter but not write (0755; pytest's tmp_path is
    under a folder only root may enter)."""
    path = Path(tempfile.mkdtemp(prefix="gigq-nobody-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def as_nobody(
    ids: tuple[int, int], folder: Path, db: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """`gigq --db DB ARGS` run as nobody, from `folder`."""
    return subprocess.run(
        [*setpriv(ids), sys.executable, "-m", "gigq_cli", "--db", str(db), *args],
        cwd=folder,
        env=environment(HOME=str(folder)),
        capture_output=True,
        text=True,
        timeout=30,
    )


#: What nobody runs against a database they cannot write.
SUBMIT = ("submit", "--name", "refused", "tests.jobs:noop")
WORKER = ("worker", "--burst", "--executor", "inline")
WRITES = (SUBMIT, WORKER)

DENIED = (77, "permission denied opening database")
READ_ONLY = (77, "is read-only")
#: A worker that can open the database checks whose files they are before it writes
#: (docs/guarantees.md D9): another user's database is a configuration error (78).
NOT_MINE = (78, "is owned by root (uid 0), not by nobody")


@pytest.mark.parametrize(
    ("mode", "owner", "live", "expected"),
    [
        # Root's database, not even readable: every command, reads too.
        (0o600, "root", False, {SUBMIT: DENIED, WORKER: DENIED, ("list",): DENIED}),
        # Readable, not writable: opening it needs its -shm made, in root's folder.
        (0o644, "root", False, {SUBMIT: READ_ONLY, WORKER: READ_ONLY}),
        # The same while root's process has it open (its -wal and -shm exist): reads work.
        (0o644, "root", True, {SUBMIT: READ_ONLY, WORKER: NOT_MINE, ("list",): (0, "")}),
        # Nobody's own file, in a folder of root's where its -wal cannot be made.
        (0o600, "nobody", False, {SUBMIT: READ_ONLY, WORKER: READ_ONLY}),
    ],
    ids=["unreadable", "readable", "readable-in-use", "own-file-in-roots-folder"],
)
def test_nobody_gets_77_on_a_database_they_cannot_write(
    nobody: tuple[int, int],
    folder: Path,
    mode: int,
    owner: str,
    live: bool,
    expected: dict[tuple[str, ...], tuple[int, str]],
) -> None:
    started = time.monotonic()
    db = folder / "jobs.db"
    kept = make_queue(db, 5)
    if owner == "nobody":
        os.chown(db, *nobody)
    db.chmod(mode)
    pm = make_plugin_manager(load_entrypoints=False)
    with contextlib.ExitStack() as stack:
        if live:  # as a worker of root's would
            stack.enter_context(JobQueue(str(db), plugin_manager=pm)).stats()
        before, files = dump(db), sorted(folder.iterdir())
        for args, (code, says) in expected.items():
            result = as_nobody(nobody, folder, db, *args)
            if code:
                assert_one_sentence(result, code, says)
            else:
                assert result.returncode == 0 and kept[0] in result.stdout, result
        if owner == "root" and mode == 0o600:
            assert_one_sentence(as_nobody(nobody, folder, db, "status", kept[0]), *DENIED)
        assert dump(db) == before, "a refused command changed the database"
        assert sorted(folder.iterdir()) == files
    assert [row["status"] for row in job_rows(db).values()] == ["pending"] * len(kept)
    codes = sorted({code for code, _ in expected.values()})
    summary("nobody-database", started, mode=oct(mode), owner=owner, live=live, codes=codes)


def test_nobody_gets_77_creating_a_database_in_a_folder_they_cannot_write(
    nobody: tuple[int, int], folder: Path
) -> None:
    started = time.monotonic()
    creating = ((*SUBMIT, "--create-folders"), (*WORKER, "--create"))
    for db, says in (
        (folder / "new.db", "permission denied creating database"),
        (folder / "sub" / "new.db", "permission denied creating folder"),
    ):
        for args in creating[: 1 if db.parent != folder else 2]:
            assert_one_sentence(as_nobody(nobody, folder, db, *args), 77, says)
        # Reading commands never create a database: a missing one is a user error; nor
        # does a worker without --create, or a submit into a missing folder without
        # --create-folders.
        for args in (("list",), WORKER):
            assert_one_sentence(as_nobody(nobody, folder, db, *args), 1, "does not exist")
    no_folder = as_nobody(nobody, folder, folder / "sub" / "new.db", *SUBMIT)
    assert_one_sentence(no_folder, 1, f"the folder {folder / 'sub'} does not exist")
    assert list(folder.iterdir()) == [], "a refused command left a file behind"
    summary("nobody-folder", started, refused=3, code=77)


# -- a full disk (ENOSPC), on a real file system ---------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of DISK_SIZE mounted for this test only: a file system that really fills."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a disk that really fills up) needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE},mode=0700", "gigq-test", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode:
            subprocess.run(["umount", "--lazy", str(mount)], check=True)


def test_a_full_disk_refuses_writes_and_checkpoints_with_74_and_keeps_every_job(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A queue in use (its log open, 100 commits not yet checkpointed) on a disk that fills
    up: submits fail with DiskFullError until space is back, the CLI's submit exits 74,
    reads go on. A checkpoint, which must grow the database file to copy the log into it,
    fails too: the automatic one (after a write) logs it and lets the write stand, and
    `gigq doctor`, which checkpoints a log past the threshold, says the disk is full (as
    its error, exit 74, or as its finding), never with a traceback."""
    started = time.monotonic()
    db = small_disk / "jobs.db"
    make_queue(db, 20)
    pm = make_plugin_manager(load_entrypoints=False)
    with JobQueue(str(db), plugin_manager=pm) as live:
        live.submit_many(
            [Job(f"w{n}", "tests.jobs:echo", params={"pad": "w" * 3000}) for n in range(100)]
        )
        filled = fill(small_disk / "filler")
        submitted = 0
        with pytest.raises(DiskFullError) as caught:  # fill until submit fails
            for n in range(1000):
                live.submit(Job(f"k{n}", "tests.jobs:echo", params={"pad": "k" * 1000}))
                submitted += 1
        assert caught.value.exit_code == 74
        before = job_rows(db)
        assert len(before) == 120 + submitted
        refused = gigq(db, "submit", "--name", "refused", "tests.jobs:echo", "-p", "t=tt")
        assert_one_sentence(refused, 74, "the disk is full")
        with JobQueue(str(db), plugin_manager=pm, checkpoint_threshold=1) as eager:
            # What a write runs after its commit once the log is past the threshold.
            assert not eager.storage._db.maybe_checkpoint()
        assert "the disk is full" in caplog.text, caplog.text
        doctor = gigq(db, "doctor", env={"GIGQ_CHECKPOINT_THRESHOLD": "1"})
        assert "Traceback" not in doctor.stderr, doctor.stderr
        if doctor.returncode == 74:
            assert_one_sentence(doctor, 74, "the disk is full")
        else:
            assert "the disk is full" in doctor.stdout, doctor.stdout
        listed = gigq(db, "--json", "list", "--limit", "1")
        assert listed.returncode == 0, listed.stderr
        (small_disk / "filler").unlink()  # the fault is gone
        live.submit(Job("after", "tests.jobs:noop"))
    assert_kept(db, before)
    assert len(job_rows(db)) == len(before) + 1
    summary("disk-full", started, kept=len(before), filler=filled, doctor=doctor.returncode)


def test_a_full_disk_found_on_open_says_the_disk_is_full(small_disk: Path) -> None:
    """With no process holding the database open, SQLite must grow its shared-memory index
    to open it: on a full disk that fails as a plain I/O error, which GigQ names for what it
    is."""
    db = small_disk / "jobs.db"
    make_queue(db, 10)
    before = job_rows(db)
    fill(small_disk / "filler")
    for args in (("submit", "--name", "refused", "tests.jobs:noop"), ("list",)):
        assert_one_sentence(gigq(db, *args), 74, "the disk is full")
    (small_disk / "filler").unlink()
    assert_kept(db, before)


def test_an_outcome_that_finds_the_disk_full_stays_running_until_rescued(
    small_disk: Path, tmp_path: Path
) -> None:
    """The job fills the disk, so its outcome's commit fails: the worker lives on, the job
    stays `running` under its lease; once space is back it is rescued, runs again and
    completes. The jobs the worker does not serve are untouched."""
    started = time.monotonic()
    db, ledger = small_disk / "jobs.db", tmp_path / "ledger"
    make_queue(db, 20, queue="other")
    before = job_rows(db)
    spoiled = spoiler(db, ledger, tmp_path, filler=str(small_disk / "filler"))
    with Fleet(db, tmp_path) as fleet:
        worker = fleet.start("w1", "--queue", "spoil")
        wait_until(
            lambda: "could not record the outcome" in worker.stderr(), 20, "a failed outcome"
        )
        assert job_row(db, spoiled)["status"] == "running"
        assert worker.process.poll() is None, worker.stderr()
        (small_disk / "filler").unlink()
        wait_until(lambda: job_row(db, spoiled)["status"] == "completed", 20, "the rescue")
        assert stop(worker) == 0, worker.stderr()
    ran = ledger.read_text().split()[::3]
    assert ran == [spoiled, spoiled], "the job did not run exactly twice"
    assert job_row(db, spoiled)["result"] == f'"{"r" * 300_000}"'
    assert_kept(db, before)
    summary("disk-full-outcome", started, runs=len(ran), kept=len(before))


def spoiler(db: Path, ledger: Path, tmp_path: Path, **fault: str) -> str:
    """Submit, on queue "spoil", the job that brings the fault about on its first run."""
    pm = make_plugin_manager(load_entrypoints=False)
    params = {"ledger": str(ledger), "once": str(tmp_path / "once"), "size": 300_000, **fault}
    with JobQueue(str(db), plugin_manager=pm) as queue:
        return queue.submit(Job("spoil", f"{__name__}:spoil_once", params=params, queue="spoil"))


# -- I/O errors, from an LD_PRELOAD shim -----------------------------------------------------


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fault shim, compiled for this run."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is missing: cannot build the LD_PRELOAD shim that fakes I/O errors")
    folder = tmp_path_factory.mktemp("shim")
    source, library = folder / "shim.c", folder / "shim.so"
    source.write_text(SHIM)
    subprocess.run(
        [gcc, "-shared", "-fPIC", "-O2", "-Wall", "-o", str(library), str(source), "-ldl"],
        check=True,
        capture_output=True,
    )
    return library


@pytest.mark.parametrize(
    ("op", "code"),
    [("write", errno.EIO), ("fsync", errno.EIO), ("fsync", errno.ENOSPC)],
    ids=["write-eio", "fsync-eio", "fsync-enospc"],
)
def test_io_errors_on_the_log_give_74_and_keep_every_job(
    shim: Path, tmp_path: Path, op: str, code: int
) -> None:
    started = time.monotonic()
    db = tmp_path / "jobs.db"
    make_queue(db, 20)
    before = job_rows(db)
    fault = {
        "LD_PRELOAD": str(shim),
        "FAULT_MARKER": f"{db.name}-wal",
        "FAULT_OPS": op,
        "FAULT_ERRNO": str(code),
    }
    for args in (
        ("submit", "--name", "refused", "tests.jobs:noop"),
        ("worker", "--burst", "--executor", "inline"),
    ):
        assert_one_sentence(gigq(db, *args, env=fault), 74, "I/O error on database")
    assert_kept(db, before)  # reopened without the shim
    assert [row["status"] for row in job_rows(db).values()] == ["pending"] * len(before)
    summary(f"io-error-{op}", started, errno=code, kept=len(before), code=74)


def test_an_outcome_that_hits_an_io_error_stays_running_until_rescued(
    shim: Path, tmp_path: Path
) -> None:
    """Writes to the database's files fail with EIO from the moment the job runs: its
    outcome is not recorded, the worker lives on, and once the writes work again the job is
    rescued, runs again and completes."""
    started = time.monotonic()
    db, ledger, armed = tmp_path / "jobs.db", tmp_path / "ledger", tmp_path / "armed"
    make_queue(db, 20, queue="other")
    before = job_rows(db)
    spoiled = spoiler(db, ledger, tmp_path, armed=str(armed))
    fault = {
        "LD_PRELOAD": str(shim),
        "FAULT_MARKER": str(db),
        "FAULT_OPS": "write",
        "FAULT_ARMED": str(armed),
    }
    with Fleet(db, tmp_path) as fleet:
        worker = fleet.start("w1", "--queue", "spoil", env=fault)
        wait_until(
            lambda: "could not record the outcome" in worker.stderr(), 20, "a failed outcome"
        )
        assert job_row(db, spoiled)["status"] == "running"
        assert worker.process.poll() is None, worker.stderr()
        armed.unlink()
        wait_until(lambda: job_row(db, spoiled)["status"] == "completed", 20, "the rescue")
        assert stop(worker) == 0, worker.stderr()
    ran = ledger.read_text().split()[::3]
    assert ran == [spoiled, spoiled], "the job did not run exactly twice"
    assert_kept(db, before)
    summary("io-error-outcome", started, runs=len(ran), kept=len(before))
