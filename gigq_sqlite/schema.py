"""The GigQ schema for SQLite: DDL, additive migrations, and the checks made on open.

The schema version lives in `PRAGMA user_version`; `PRAGMA application_id` marks the file as
a GigQ database, so a foreign SQLite file is recognised without reading its tables.
"""

from __future__ import annotations

import sqlite3

from gigq_core.errors import NotADatabaseError, SchemaVersionError, StorageError

#: "GIGQ" in ASCII; stored in the database header to mark GigQ files.
APPLICATION_ID = 0x47494751

#: The oldest SQLite that has everything the adapter uses (RETURNING needs 3.35).
MIN_SQLITE_VERSION = (3, 35, 0)

JOBS = """
CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    function TEXT NOT NULL,
    params TEXT NOT NULL,
    queue TEXT NOT NULL,
    priority INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    timeout REAL,
    retry TEXT NOT NULL,
    retry_params TEXT NOT NULL,
    description TEXT NOT NULL,
    pass_parent_results INTEGER,
    unique_key TEXT,
    unique_scope TEXT NOT NULL,
    workflow_id TEXT,
    workflow_name TEXT,
    run_at REAL NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    started_at REAL,
    completed_at REAL,
    worker_id TEXT,
    token TEXT,
    lease_expires_at REAL,
    result TEXT,
    error TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    handbacks INTEGER NOT NULL DEFAULT 0,
    -- how many dependency rows point at a job that has not completed yet
    blocked INTEGER NOT NULL DEFAULT 0,
    -- the upstream job whose bad end cancelled this one (requeue revives by it)
    cancelled_by TEXT
)
"""

# The partial indexes repeat the literal terms that queries use ("status = 'pending' AND
# blocked = 0"), which is what lets SQLite pick them.
JOBS_INDEXES = (
    "CREATE INDEX jobs_ready ON jobs (priority DESC, seq) WHERE status = 'pending' AND blocked = 0",
    "CREATE INDEX jobs_due ON jobs (run_at) WHERE status = 'pending' AND blocked = 0",
    "CREATE INDEX jobs_running ON jobs (lease_expires_at) WHERE status = 'running'",
    "CREATE INDEX jobs_status ON jobs (status, seq)",
    "CREATE INDEX jobs_queue ON jobs (queue, seq)",
    "CREATE INDEX jobs_workflow ON jobs (workflow_id, seq) WHERE workflow_id IS NOT NULL",
    "CREATE INDEX jobs_cancelled_by ON jobs (cancelled_by) WHERE cancelled_by IS NOT NULL",
    "CREATE INDEX jobs_unique_key ON jobs (unique_key) WHERE unique_key IS NOT NULL",
    "CREATE UNIQUE INDEX jobs_unique_active ON jobs (unique_key)"
    " WHERE unique_key IS NOT NULL AND status IN ('pending', 'running')",
)

DEPENDENCIES = """
CREATE TABLE dependencies (
    job_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    depends_on TEXT NOT NULL,
    PRIMARY KEY (job_id, position)
) WITHOUT ROWID
"""

DEPENDENCIES_INDEX = "CREATE INDEX dependencies_upstream ON dependencies (depends_on)"

EXECUTIONS = """
CREATE TABLE job_executions (
    id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    worker_id TEXT NOT NULL,
    token TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at REAL NOT NULL,
    completed_at REAL,
    result TEXT,
    error_type TEXT,
    error_message TEXT,
    error_traceback TEXT
)
"""

EXECUTIONS_INDEX = "CREATE INDEX job_executions_job ON job_executions (job_id, started_at, attempt)"

WORKERS = """
CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    queues TEXT NOT NULL,
    concurrency INTEGER NOT NULL,
    started_at REAL NOT NULL,
    last_heartbeat REAL NOT NULL,
    stopped_at REAL
) WITHOUT ROWID
"""

KV = """
CREATE TABLE kv (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID
"""

PAUSED_QUEUES = "CREATE TABLE paused_queues (queue TEXT PRIMARY KEY) WITHOUT ROWID"

#: Migration n (1-based) brings a database from version n - 1 to n. Only additive changes
#: belong here (they run on open); anything else needs `gigq upgrade`.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        JOBS,
        *JOBS_INDEXES,
        DEPENDENCIES,
        DEPENDENCIES_INDEX,
        EXECUTIONS,
        EXECUTIONS_INDEX,
        WORKERS,
        KV,
        PAUSED_QUEUES,
    ),
)

#: The version this code writes and understands.
SCHEMA_VERSION = len(MIGRATIONS)

#: Versions (numbered as MIGRATIONS) whose migration is not additive: it rewrites or drops
#: something an older GigQ still running would rely on. Those never run on open, only through
#: `gigq upgrade` (SqliteStorage.upgrade), which refuses while workers are live. None yet.
NON_ADDITIVE: frozenset[int] = frozenset()


def check_sqlite_version() -> None:
    """Refuse an SQLite library older than MIN_SQLITE_VERSION."""
    if sqlite3.sqlite_version_info < MIN_SQLITE_VERSION:
        wanted = ".".join(map(str, MIN_SQLITE_VERSION))
        raise StorageError(
            f"GigQ needs SQLite {wanted} or newer; this Python uses SQLite {sqlite3.sqlite_version}"
        )


def ensure_schema(
    conn: sqlite3.Connection, path: str, *, read_only: bool, upgrading: bool = False
) -> None:
    """Validate the database at `path` and bring its schema up to date.

    A new (empty) database is created; an older GigQ schema gets its additive migrations; a
    newer one raises SchemaVersionError and a foreign file NotADatabaseError, both without
    writing anything. A pending non-additive migration raises SchemaVersionError (run
    `gigq upgrade`) unless `upgrading`, which opens the database for `upgrade` alone.
    SQLite itself reads the file, so a non-database raises sqlite3.DatabaseError here.
    """
    state = _inspect(conn)
    if state == (0, 0, 0):
        if read_only:
            raise NotADatabaseError(f"{path} is an empty database, not a GigQ database")
        _create(conn)
        state = _inspect(conn)
    _check_known(state, path)
    if state[2] < SCHEMA_VERSION:
        if read_only:
            raise SchemaVersionError(
                f"database {path} has schema version {state[2]} and needs upgrading to "
                f"{SCHEMA_VERSION}; open it once without read_only"
            )
        _migrate(conn, path, additive_target(state[2]))
        state = _inspect(conn)
    if state[2] < SCHEMA_VERSION and not upgrading:
        raise SchemaVersionError(
            f"database {path} has schema version {state[2]} and this GigQ needs "
            f"{SCHEMA_VERSION}, a change that is not additive: stop the workers and run "
            "`gigq upgrade` (take a `gigq backup` first)"
        )


def additive_target(version: int) -> int:
    """The version the additive migrations alone bring a database of `version` to."""
    target = version
    while target < SCHEMA_VERSION and target + 1 not in NON_ADDITIVE:
        target += 1
    return target


def upgrade_schema(conn: sqlite3.Connection, path: str) -> list[int]:
    """Apply every pending migration, in the caller's BEGIN IMMEDIATE transaction; returns
    the versions applied."""
    state = _inspect(conn)
    _check_known(state, path)
    applied = list(range(state[2] + 1, SCHEMA_VERSION + 1))
    for version in applied:
        for statement in MIGRATIONS[version - 1]:
            conn.execute(statement)
    if applied:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return applied


def _inspect(conn: sqlite3.Connection) -> tuple[int, int, int]:
    """(number of schema objects, application_id, user_version)."""
    (objects,) = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    (app_id,) = conn.execute("PRAGMA application_id").fetchone()
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    return int(objects), int(app_id), int(version)


def _check_known(state: tuple[int, int, int], path: str) -> None:
    _, app_id, version = state
    if app_id != APPLICATION_ID:
        raise NotADatabaseError(
            f"{path} is an SQLite database but not a GigQ database; it was left unchanged"
        )
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"database {path} has schema version {version}, newer than this GigQ knows "
            f"({SCHEMA_VERSION}); upgrade GigQ to use it (the file was left unchanged)"
        )


def _create(conn: sqlite3.Connection) -> None:
    # auto_vacuum only takes effect before the first table exists; journal_mode=WAL is
    # persistent, so both are set once, here.
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("PRAGMA journal_mode = WAL").fetchall()
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have created the schema while we waited for the lock.
        if _inspect(conn) == (0, 0, 0):
            for statement in MIGRATIONS[0]:
                conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute("PRAGMA user_version = 1")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _migrate(conn: sqlite3.Connection, path: str, target: int) -> None:
    """Apply the migrations up to version `target` (additive ones only: see NON_ADDITIVE)."""
    if target <= _inspect(conn)[2]:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        state = _inspect(conn)
        _check_known(state, path)
        # Another process may have migrated while we waited for the lock.
        for version in range(state[2], max(target, state[2])):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
        if target > state[2]:
            conn.execute(f"PRAGMA user_version = {target}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


__all__ = [
    "APPLICATION_ID",
    "MIGRATIONS",
    "MIN_SQLITE_VERSION",
    "NON_ADDITIVE",
    "SCHEMA_VERSION",
    "additive_target",
    "check_sqlite_version",
    "ensure_schema",
    "upgrade_schema",
]
