"""Showing settings, answers and output without their secrets or terminal control codes.

The settings hold credentials (an Authorization header, a password in the webhook URL, a
token in its query or path, a token on the command line), and what a target answers may
quote them. Every message, log line and `gigq notify test` line goes through here first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from urllib.parse import parse_qsl, urlsplit, urlunsplit

#: What stands in for a secret.
MASK = "***"

_SECRET_WORDS = (
    r"token|secret|passw(?:or)?d|pwd|api[_-]?key|apikey|access[_-]?key|private[_-]?key"
    r"|auth\w*|credentials?|signature|sig|session|cookie"
)
#: A URL in free text (up to a space, a quote or a closing bracket).
_URL = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s'\"<>()\[\]{}]+")
#: `Authorization: <anything>` up to the end of the quoted string or the line.
_AUTHORIZATION = re.compile(
    r"(?i)\b((?:proxy-)?authorization)(['\"]?\s*[:=]\s*)(['\"]?)([^'\"\r\n]+)"
)
#: An HTTP authentication scheme and its credentials.
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer\s+)[^\s'\",;}\]]+|\b(basic\s+)[A-Za-z0-9+/]{8,}=*")
#: `name=value` or `name: value` where the name says it holds a secret.
_KEY_VALUE = re.compile(
    rf"(?i)([\w.-]*(?:{_SECRET_WORDS})[\w.-]*)(['\"]?\s*[:=]\s*)(['\"]?)([^\s'\",;&}}\]]+)"
)
#: A path segment that looks like a token (long, letters and digits): chat webhooks carry
#: their secret in the path.
_TOKEN_SEGMENT = re.compile(r"^(?=.*[A-Za-z])(?=.*\d)[A-Za-z0-9_~.+=-]{16,}$")
#: Command-line options whose value (the next argument) is a secret.
_SECRET_OPTION = re.compile(rf"(?i)^--?(?:u|user|[\w-]*(?:{_SECRET_WORDS})[\w-]*)$")


def printable(text: str) -> str:
    """`text` with every control character (escape sequences, newlines) written as an
    escape, so nothing received can move a terminal's cursor or forge a log line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def redact_url(url: str) -> str:
    """The URL with its user info, its query values and token-like path parts masked."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
    except ValueError:  # not parseable as a URL: mask it whole rather than guess
        return MASK
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    path = "/".join(MASK if _TOKEN_SEGMENT.match(s) else s for s in parts.path.split("/"))
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = "&".join(f"{name}={MASK}" for name, _ in pairs) if pairs else MASK
    fragment = MASK if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, path, query, fragment))


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with the known `secrets`, URL credentials, authentication headers and
    `token=...`-style values masked, and its control characters escaped."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= 3:
            text = text.replace(secret, MASK)
    text = printable(text)
    text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    text = _AUTHORIZATION.sub(lambda m: f"{m[1]}{m[2]}{m[3]}{MASK}", text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m[1] or m[2]}{MASK}", text)
    return _KEY_VALUE.sub(lambda m: f"{m[1]}{m[2]}{m[3]}{MASK}", text)


def redact_command(command: Sequence[str], secrets: Iterable[str] = ()) -> str:
    """The command line, for display: secrets masked, and the value after an option such
    as `--password`, `--token` or `-u` masked whole."""
    known = tuple(secrets)
    shown = []
    hide_next = False
    for arg in command:
        shown.append(MASK if hide_next else redact(arg, known))
        hide_next = bool(_SECRET_OPTION.match(arg))
    return " ".join(shown)


def url_secrets(url: str) -> list[str]:
    """The secret parts of a URL: its user info and password, query values, token-like path
    segments (so that a target quoting them back is masked too)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found = []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rpartition("@")[0]
        found += [userinfo, userinfo.partition(":")[2]]
    found += [value for _, value in parse_qsl(parts.query, keep_blank_values=True)]
    found += [s for s in parts.path.split("/") if _TOKEN_SEGMENT.match(s)]
    return [s for s in found if s]


#: Request headers whose values are never secret.
_PLAIN_HEADERS = frozenset(
    {"accept", "accept-encoding", "accept-language", "content-type", "user-agent"}
)


def header_secrets(name: str, value: str) -> list[str]:
    """A header's value and, for `Scheme credentials`, the credentials alone."""
    if name.strip().lower() in _PLAIN_HEADERS:
        return []
    found = [value.strip()]
    credentials = value.strip().partition(" ")[2].strip()
    if credentials:
        found.append(credentials)
    return [s for s in found if s]


def command_secrets(command: Sequence[str]) -> list[str]:
    """The arguments of a command line that are secrets: the value after `--password`,
    `--token`, `-u` and the like, and the value of `--token=...`."""
    found = []
    hide_next = False
    for arg in command:
        if hide_next:
            found.append(arg)
        else:
            found += [m[4] for m in _KEY_VALUE.finditer(arg)]
        hide_next = bool(_SECRET_OPTION.match(arg))
    return [s for s in found if s]


__all__ = [
    "MASK",
    "command_secrets",
    "header_secrets",
    "printable",
    "redact",
    "redact_command",
    "redact_url",
    "url_secrets",
]
