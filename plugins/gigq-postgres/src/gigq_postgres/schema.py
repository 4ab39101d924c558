"""GigQ's tables in a PostgreSQL schema (namespace): DDL, additive migrations and the
checks made on open.

The version lives in the `gigq_meta` table of the schema. Every connection sets
`search_path` to the schema, so the statements name tables without it. Text that is
compared or sorted (ids, names, queues, keys) uses the "C" collation: code-point order,
as Python sorts, and range scans for id prefixes.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from gigq_core.errors import DatabaseNotFoundError, NotADatabaseError, SchemaVersionError

JOBS = """
CREATE TABLE jobs (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text COLLATE "C" NOT NULL UNIQUE,
    name text COLLATE "C" NOT NULL,
    function text NOT NULL,
    params text NOT NULL,
    queue text COLLATE "C" NOT NULL,
    priority bigint NOT NULL,
    status text NOT NULL,
    attempts integer NOT NULL,
    max_attempts integer NOT NULL,
    timeout double precision,
    retry text NOT NULL,
    retry_params text NOT NULL,
    description text NOT NULL,
    dependencies text[] COLLATE "C" NOT NULL DEFAULT '{}',
    pass_parent_results boolean,
    unique_key text COLLATE "C",
    unique_scope text NOT NULL,
    workflow_id text COLLATE "C",
    workflow_name text,
    run_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    started_at timestamptz,
    completed_at timestamptz,
    worker_id text COLLATE "C",
    token text,
    lease_expires_at timestamptz,
    result text,
    error text,
    cancel_requested boolean NOT NULL DEFAULT false,
    handbacks integer NOT NULL DEFAULT 0,
    -- how many entries of `dependencies` name a job that has not completed yet
    blocked integer NOT NULL DEFAULT 0,
    -- the upstream job whose bad end cancelled this one (requeue revives by it)
    cancelled_by text COLLATE "C"
)
"""

JOBS_INDEXES = (
    "CREATE INDEX jobs_ready ON jobs (priority DESC, seq) WHERE status = 'pending' AND blocked = 0",
    "CREATE INDEX jobs_due ON jobs (run_at) WHERE status = 'pending' AND blocked = 0",
    "CREATE INDEX jobs_running ON jobs (lease_expires_at) WHERE status = 'running'",
    "CREATE INDEX jobs_status ON jobs (status, seq)",
    "CREATE INDEX jobs_queue ON jobs (queue, seq)",
    "CREATE INDEX jobs_updated ON jobs (updated_at)",
    "CREATE INDEX jobs_workflow ON jobs (workflow_id, seq) WHERE workflow_id IS NOT NULL",
    "CREATE INDEX jobs_cancelled_by ON jobs (cancelled_by) WHERE cancelled_by IS NOT NULL",
    "CREATE INDEX jobs_unique_key ON jobs (unique_key) WHERE unique_key IS NOT NULL",
    "CREATE INDEX jobs_dependencies ON jobs USING gin (dependencies)"
    " WHERE cardinality(dependencies) > 0",
    "CREATE UNIQUE INDEX jobs_unique_active ON jobs (unique_key)"
    " WHERE unique_key IS NOT NULL AND status IN ('pending', 'running')",
)

EXECUTIONS = """
CREATE TABLE job_executions (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text NOT NULL,
    job_id text COLLATE "C" NOT NULL,
    attempt integer NOT NULL,
    worker_id text NOT NULL,
    token text NOT NULL,
    status text NOT NULL,
    started_at timestamptz NOT NULL,
    completed_at timestamptz,
    result text,
    error_type text,
    error_message text,
    error_traceback text
)
"""

EXECUTIONS_INDEX = "CREATE INDEX job_executions_job ON job_executions (job_id, token)"

WORKERS = """
CREATE TABLE workers (
    id text COLLATE "C" PRIMARY KEY,
    host text NOT NULL,
    pid integer NOT NULL,
    queues text[] NOT NULL,
    concurrency integer NOT NULL,
    started_at timestamptz NOT NULL,
    last_heartbeat timestamptz NOT NULL,
    stopped_at timestamptz
)
"""

KV = """
CREATE TABLE kv (
    namespace text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    value text NOT NULL,
    PRIMARY KEY (namespace, key)
)
"""

PAUSED_QUEUES = 'CREATE TABLE paused_queues (queue text COLLATE "C" PRIMARY KEY)'

META = "CREATE TABLE gigq_meta (key text PRIMARY KEY, value text NOT NULL)"

# The ready jobs a claim takes, locked (SKIP LOCKED), in claim order. The plan must walk
# jobs_ready in its order whatever the planner's statistics say: after an ANALYZE of an
# empty queue the planner expects about one pending row, and then prefers to read every
# due row through jobs_due (or a bitmap, or the table) and sort them, which costs a read
# of the whole backlog per claim. Only a function can carry planner settings for one
# statement; with sorts, bitmaps and sequential scans priced out, the one plan left
# without them is the walk of jobs_ready, which stops after `max_jobs` ready rows.
# (A SQL function with SET options is never inlined, so the settings hold. ROWS 1: the
# claim joins its rows to jobs by primary key, one lookup each, never a hash join over a
# scan of the table.)
READY_JOBS = """
CREATE FUNCTION gigq_ready_jobs(due_by timestamptz, max_jobs bigint, queues text[])
RETURNS TABLE (seq bigint) LANGUAGE sql VOLATILE ROWS 1
SET enable_sort = off SET enable_bitmapscan = off SET enable_seqscan = off
AS $$
    SELECT j.seq FROM jobs j
    WHERE j.status = 'pending' AND j.blocked = 0 AND j.run_at <= due_by
        AND (queues IS NULL OR j.queue = ANY(queues))
        AND j.queue NOT IN (SELECT p.queue FROM paused_queues p)
    ORDER BY j.priority DESC, j.seq
    LIMIT max_jobs
    FOR UPDATE OF j SKIP LOCKED
$$
"""

#: Migration n (1-based) brings a schema from version n - 1 to n. Only additive changes
#: belong here (they run on open); anything else needs `gigq upgrade`.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (JOBS, *JOBS_INDEXES, EXECUTIONS, EXECUTIONS_INDEX, WORKERS, KV, PAUSED_QUEUES),
    (READY_JOBS,),
)

#: The version this code writes and understands.
SCHEMA_VERSION = len(MIGRATIONS)

#: Every table GigQ owns in its schema (for tests and `TRUNCATE`).
TABLES = ("jobs", "job_executions", "workers", "kv", "paused_queues")


def read_version(conn: psycopg.Connection, schema: str) -> int | None:
    """The schema version recorded in `schema`, or None when there is no GigQ schema.

    NotADatabaseError when the schema holds tables but no GigQ version.
    """
    row = conn.execute(
        "SELECT to_regclass(format('%%I.gigq_meta', %s::text)) IS NOT NULL,"
        " (SELECT count(*) FROM pg_tables WHERE schemaname = %s)",
        (schema, schema),
    ).fetchone()
    assert row is not None
    has_meta, tables = row
    if not has_meta:
        if tables:
            raise NotADatabaseError(
                f"the PostgreSQL schema '{schema}' holds tables that are not GigQ's; "
                "choose another schema with ?schema=NAME (nothing was changed)"
            )
        return None
    query = sql.SQL("SELECT value FROM {}.gigq_meta WHERE key = 'schema_version'").format(
        sql.Identifier(schema)
    )
    found = conn.execute(query).fetchone()
    return int(found[0]) if found else 0


def ensure_schema(
    conn: psycopg.Connection, schema: str, where: str, *, create: bool, read_only: bool
) -> None:
    """Validate the GigQ schema and bring it up to date (`conn` in autocommit mode).

    A missing schema is created (unless `create` is false: DatabaseNotFoundError); an older
    one is migrated; a newer one raises SchemaVersionError and a foreign one
    NotADatabaseError, both without writing anything. Concurrent first uses are serialized
    by an advisory lock, so exactly one of them creates the tables.
    """
    version = read_version(conn, schema)
    if version == SCHEMA_VERSION:
        return
    _check_known(version, schema)
    if version is None and (read_only or not create):
        raise DatabaseNotFoundError(
            f"there is no GigQ schema '{schema}' in the PostgreSQL database {where}"
        )
    if read_only:
        raise SchemaVersionError(
            f"the GigQ schema '{schema}' in {where} has version {version} and needs "
            f"upgrading to {SCHEMA_VERSION}; open it once without read_only"
        )
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('gigq-migrate:' || %s))", (schema,))
        version = read_version(conn, schema)
        _check_known(version, schema)
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        if version is None:
            conn.execute(META)
            version = 0
        for number in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS[number]:
                conn.execute(statement)
        conn.execute(
            "INSERT INTO gigq_meta (key, value) VALUES ('schema_version', %s)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )


def _check_known(version: int | None, schema: str) -> None:
    if version is not None and version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"the GigQ schema '{schema}' has version {version}, newer than this plugin knows "
            f"({SCHEMA_VERSION}); upgrade gigq-postgres to use it (nothing was changed)"
        )


__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "TABLES", "ensure_schema", "read_version"]
