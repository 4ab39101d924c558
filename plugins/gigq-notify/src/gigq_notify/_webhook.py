"""POSTing one notification to the webhook: one deadline for the whole send, no redirects.

`timeout` bounds the whole request, connect to last byte: a timer shuts the connection down
when it is over, so a server that sends one byte now and then cannot hold the sender (a
socket timeout alone applies to each read). A redirect is a failure: following it would
send the body and the credentials (the Authorization header) to another address.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

from gigq_notify._config import NotifyConfig
from gigq_notify._redaction import redact_url

if TYPE_CHECKING:
    import urllib.request

#: HTTP statuses worth another try.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
#: The statuses that redirect (never followed).
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class Deadline:
    """Shuts down every connection of one send once `seconds` have passed since it was
    entered (`with`)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._ends = time.monotonic() + seconds  # set again when entered
        self._lock = threading.Lock()
        # Duplicates of the connections' sockets: shutting one down ends the connection,
        # whichever object reads from it (a TLS wrapper included) and whatever it waits for.
        self._watched: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._ends = time.monotonic() + self.seconds
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        with self._lock:
            watched, self._watched = self._watched, []
        for sock in watched:
            sock.close()

    def left(self) -> float:
        """Seconds left; TimeoutError when none are."""
        left = self._ends - time.monotonic()
        if left <= 0 or self.expired:
            raise TimeoutError(f"timed out after {self.seconds:g} s")
        return left

    def watch(self, sock: socket.socket) -> None:
        """End `sock`'s connection when the time is over (at once if it already is)."""
        copy = sock.dup()
        with self._lock:
            self._watched.append(copy)
            expired = self.expired
        if expired:
            _shut(copy)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            watched = list(self._watched)
        for sock in watched:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Connection(http.client.HTTPConnection):
    """A connection that connects within what is left of its deadline, and is watched."""

    deadline: Deadline

    def connect(self) -> None:
        self.timeout = self.deadline.left()
        super().connect()
        self.deadline.watch(self.sock)


class _TLSConnection(http.client.HTTPSConnection, _Connection):
    """The same over TLS: the socket is watched before the handshake (_Connection.connect
    runs inside HTTPSConnection.connect, before it wraps the socket)."""


def _opener(deadline: Deadline) -> urllib.request.OpenerDirector:
    import urllib.request

    def factory(cls: type[_Connection]) -> Any:
        def make(host: str, **kwargs: Any) -> _Connection:
            connection = cls(host, **kwargs)
            connection.deadline = deadline
            return connection

        return make

    class HTTP(urllib.request.HTTPHandler):
        def do_open(self, http_class: Any, req: Any, **kwargs: Any) -> Any:
            return super().do_open(factory(_Connection), req, **kwargs)

    class HTTPS(urllib.request.HTTPSHandler):
        def do_open(self, http_class: Any, req: Any, **kwargs: Any) -> Any:
            return super().do_open(factory(_TLSConnection), req, **kwargs)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        # No new request: the 3xx answer goes on to the default handler, which raises it
        # as an HTTPError, reported and never followed.
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    return urllib.request.build_opener(HTTP(), HTTPS(), NoRedirect())


def split_credentials(url: str) -> tuple[str, str | None]:
    """(the URL without user info, a Basic Authorization value for it or None)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
    return urlunsplit(parts._replace(netloc=host)), f"Basic {token}"


def send_webhook(config: NotifyConfig, event: Mapping[str, Any]) -> tuple[bool, str, bool]:
    """POST the event as JSON once, within `config.timeout` in all: (accepted, detail,
    worth retrying). The detail may quote the server; the caller redacts it."""
    # Imported here: urllib.request costs every `gigq` command ~30 ms at start-up.
    import urllib.error
    import urllib.request

    assert config.webhook_url is not None
    url, basic = split_credentials(config.webhook_url)
    body = json.dumps(event, default=str).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "gigq-notify"}
    if basic and not any(name.lower() == "authorization" for name in config.headers):
        headers["Authorization"] = basic
    headers.update(config.headers)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    deadline = Deadline(config.timeout)
    try:
        with deadline, _opener(deadline).open(request, timeout=config.timeout) as response:
            status = response.status
            # The status is the answer; the body is read (bounded) only so that the server
            # sees a whole exchange, and a server dragging it out changes nothing.
            with contextlib.suppress(OSError, http.client.HTTPException):
                response.read(65536)
            return True, f"HTTP {status}", False
    except urllib.error.HTTPError as err:
        err.close()
        location = err.headers.get("Location") if err.headers else None
        if err.code in _REDIRECTS or (300 <= err.code < 400 and location):
            where = f"redirects to {redact_url(location)}" if location else "redirects"
            return (
                False,
                f"HTTP {err.code} {err.reason}: the webhook {where}, and redirects are not "
                "followed (set webhook_url to the final address)",
                False,
            )
        return False, f"HTTP {err.code} {err.reason}", err.code in RETRY_STATUSES
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as err:
        if deadline.expired or isinstance(getattr(err, "reason", err), TimeoutError):
            return False, f"timed out after {config.timeout:g} s", True
        reason = getattr(err, "reason", err)
        return False, f"{type(reason).__name__}: {reason}", True


__all__ = ["RETRY_STATUSES", "Deadline", "send_webhook", "split_credentials"]
