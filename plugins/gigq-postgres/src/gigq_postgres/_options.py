"""From a `postgresql://` URL and GigQ's merged settings to connection settings.

The core strips the query string from the URL before calling the storage hook and merges
its parameters into `options`; a URL may still carry a query when it is opened directly
(`open_storage(url)`), so both are read, `options` winning.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import attrs

from gigq_core.errors import ConfigError
from gigq_sql.options import BUSY_TIMEOUT, DURABILITY, durability, flag, number

SCHEMES = ("postgresql://", "postgres://")

#: Settings of this adapter (not passed to libpq).
OWN_OPTIONS = frozenset({"schema", "pool_size"})

#: libpq connection keywords accepted from the URL query or the settings. `password` and
#: `passfile` are left to the URL's user info and libpq's usual sources.
LIBPQ_KEYWORDS = frozenset(
    {
        "application_name",
        "channel_binding",
        "client_encoding",
        "connect_timeout",
        "gssencmode",
        "keepalives",
        "keepalives_count",
        "keepalives_idle",
        "keepalives_interval",
        "options",
        "passfile",
        "service",
        "sslcert",
        "sslcrl",
        "sslkey",
        "sslmode",
        "sslrootcert",
        "target_session_attrs",
        "tcp_user_timeout",
    }
)


#: PostgreSQL identifiers are at most 63 bytes (NAMEDATALEN - 1).
MAX_IDENTIFIER = 63


@attrs.frozen(kw_only=True)
class Settings:
    """How to reach the database and where GigQ's tables live."""

    #: The libpq connection string (URL without GigQ's parameters); may hold a password.
    conninfo: str
    #: The URL for messages: the password masked, GigQ's parameters kept.
    display_url: str
    #: "host:port/dbname", for messages.
    where: str
    #: PostgreSQL schema (namespace) holding GigQ's tables.
    schema: str = "gigq"
    #: Connections one storage object keeps open at most (besides its LISTEN connection).
    pool_size: int = 4
    #: Seconds an operation keeps retrying a lost connection or a conflict.
    busy_timeout: float = BUSY_TIMEOUT.default
    #: Seconds to wait for a new connection.
    connect_timeout: float = 10.0
    #: "full" (synchronous_commit on) or "normal" (synchronous_commit off).
    durability: str = DURABILITY.default
    #: Create the schema (and the tables) when missing.
    create: bool = True
    #: Open read-only (every transaction READ ONLY).
    read_only: bool = False


def is_postgres_url(url: str) -> bool:
    """True for the URLs this plugin answers."""
    return url.lower().startswith(SCHEMES)


def parse(url: str, options: dict[str, Any]) -> Settings:
    """Settings for `url` with the settings `options`; ConfigError names a bad value."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    merged: dict[str, Any] = {**query, **options}
    schema = str(merged.get("schema", "gigq") or "")
    if not schema or len(schema.encode()) > MAX_IDENTIFIER or "\x00" in schema:
        raise ConfigError(
            f"schema must be a PostgreSQL identifier of 1 to {MAX_IDENTIFIER} bytes, not {schema!r}"
        )
    libpq = {
        key: str(value)
        for key, value in merged.items()
        if key in LIBPQ_KEYWORDS and value is not None and key != "connect_timeout"
    }
    connect_timeout = number(merged, "connect_timeout", 10.0)
    libpq["connect_timeout"] = str(max(1, round(connect_timeout)))
    libpq.setdefault("application_name", "gigq")
    # Only libpq's keywords go to libpq: GigQ's own settings in the query are dropped.
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    conninfo = base + "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in sorted(libpq.items()))
    pool_size = int(number(merged, "pool_size", 4))
    if pool_size < 1:
        raise ConfigError(f"pool_size must be 1 or more, not {merged.get('pool_size')!r}")
    display_url = mask_password(url)
    if "schema" not in query and schema != "gigq":
        # The core took the query off the URL: name the schema, so messages say which store.
        display_url += f"{'&' if parts.query else '?'}schema={quote(schema, safe='')}"
    return Settings(
        conninfo=conninfo,
        display_url=display_url,
        where=_where(parts),
        schema=schema,
        pool_size=pool_size,
        busy_timeout=number(merged, "busy_timeout", BUSY_TIMEOUT.default),
        connect_timeout=connect_timeout,
        durability=durability(merged),
        create=flag(merged, "create", True),
        read_only=flag(merged, "read_only", False),
    )


def mask_password(url: str) -> str:
    """`url` with the password of its user info replaced by `***`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = re.sub(r":[^:@/]*@", ":***@", parts.netloc, count=1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _where(parts: Any) -> str:
    host = parts.hostname or "localhost"
    try:
        port = parts.port or 5432
    except ValueError:
        raise ConfigError(f"invalid port in the PostgreSQL URL (host {host})") from None
    database = parts.path.lstrip("/") or parts.username or "postgres"
    return f"{host}:{port}/{database}"


__all__ = ["SCHEMES", "Settings", "is_postgres_url", "mask_password", "parse"]
