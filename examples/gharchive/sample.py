"""Deterministic sample hour files in the exact GH Archive format, for machines without internet.

GH Archive (https://www.gharchive.org/) publishes one gzip file per hour, named
`YYYY-MM-DD-H.json.gz` (the hour not zero-padded), holding one GitHub event per line as the
Events API returns it: `id`, `type`, `actor{id,login,display_login,gravatar_id,url,
avatar_url}`, `repo{id,name,url}`, `payload{...}` (its shape depends on the type), `public`,
`created_at`, and `org{...}` when the repository belongs to an organization.

`generate(directory, date, hours, ...)` writes such files from a fixed seed: the same
arguments give the same events on every machine (and the same bytes with the same zlib: the
gzip header carries no time or name), so the example's output is reproducible. The
population is skewed like the real one (a few busy repositories and bots, a long tail), the
mix of event types follows real hours, events per hour follow a daily curve, pushes of more
than 20 commits list only 20 (as GitHub does), and a few malformed lines are planted on
purpose (a truncated event, a line of garbage, invalid UTF-8, a JSON value that is not an
event) to show they are counted, not fatal.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import math
import os
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: The sample the example uses when no --source or --start is given: one day, in UTC.
SAMPLE_DATE = "2024-01-15"
SAMPLE_SEED = 2024
#: Average events per hour of the default sample; GH Archive hours hold ~100-250 thousand.
SAMPLE_EVENTS_PER_HOUR = 700

API = "https://api.github.com"
AVATARS = "https://avatars.githubusercontent.com"

#: Event types with their share of a real hour (early 2024, rounded).
EVENT_MIX: list[tuple[str, float]] = [
    ("PushEvent", 0.55),
    ("CreateEvent", 0.12),
    ("PullRequestEvent", 0.07),
    ("WatchEvent", 0.06),
    ("IssueCommentEvent", 0.05),
    ("DeleteEvent", 0.03),
    ("IssuesEvent", 0.025),
    ("PullRequestReviewEvent", 0.025),
    ("ForkEvent", 0.015),
    ("PullRequestReviewCommentEvent", 0.015),
    ("ReleaseEvent", 0.006),
    ("GollumEvent", 0.002),
    ("MemberEvent", 0.002),
    ("PublicEvent", 0.002),
    ("CommitCommentEvent", 0.001),
]

#: Real bot accounts (their real ids), which dominate pushes and pull requests.
BOTS = [
    (41898282, "github-actions[bot]"),
    (49699333, "dependabot[bot]"),
    (29139614, "renovate[bot]"),
    (66853113, "pre-commit-ci[bot]"),
]

# fmt: off
_SYLLABLES = [
    "ka", "ri", "to", "mo", "na", "shi", "lu", "ve", "an", "el", "or", "in", "da", "ne", "zo",
    "ra", "ki", "be", "ta", "pe", "lo", "mi", "su", "jo", "ha", "qu", "ax", "ed", "yn", "ol",
    "ur", "is", "ty"
]
_WORDS = [
    "api", "app", "core", "cli", "web", "data", "sdk", "lib", "kit", "server", "client",
    "tools", "docs", "site", "bot", "engine", "parser", "ui", "config", "infra", "graph",
    "cache", "queue", "ml", "vision", "chat", "notes", "game", "wallet"
]
# fmt: on
_MESSAGES = [
    "Fix typo in README",
    "Update dependencies",
    "Add tests for the parser",
    "Refactor the config loader",
    "Merge pull request #{n} from {owner}/patch-{n}",
    "Bump actions/checkout from 3 to 4",
    "Initial commit",
    "WIP",
    "Handle empty input",
    "Improve error messages",
    "chore: format code",
    "docs: explain the setup",
]


def _word(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(syllables))


def _sha(rng: random.Random) -> str:
    return f"{rng.getrandbits(160):040x}"


class _World:
    """The accounts and repositories events are drawn from, the same for every hour."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        self.users: list[dict[str, Any]] = []
        logins: set[str] = set()
        while len(self.users) < 400:
            login = _word(rng, rng.randint(2, 4))
            if rng.random() < 0.3:
                login += str(rng.randint(1, 99))
            if rng.random() < 0.15:
                login = f"{login}-{_word(rng, 2)}"
            if login in logins:
                continue
            logins.add(login)
            self.users.append(self._account(rng.randint(10_000, 150_000_000), login))
        self.bots = [self._account(uid, login) for uid, login in BOTS]
        self.orgs: list[dict[str, Any]] = []
        while len(self.orgs) < 25:
            login = _word(rng, 3) + rng.choice(["", "-labs", "-io", "hq", "-dev"])
            if login in logins:
                continue
            logins.add(login)
            uid = rng.randint(1_000_000, 150_000_000)
            self.orgs.append(
                {
                    "id": uid,
                    "login": login,
                    "gravatar_id": "",
                    "url": f"{API}/orgs/{login}",
                    "avatar_url": f"{AVATARS}/u/{uid}?",
                }
            )
        self.repos: list[dict[str, Any]] = []
        names: set[str] = set()
        while len(self.repos) < 300:
            org = rng.choice(self.orgs) if rng.random() < 0.35 else None
            owner = org["login"] if org else rng.choice(self.users)["login"]
            name = f"{owner}/{rng.choice(_WORDS)}"
            if rng.random() < 0.5:
                name += f"-{rng.choice(_WORDS)}"
            if name in names:
                continue
            names.add(name)
            self.repos.append({"id": rng.randint(100_000, 750_000_000), "name": name, "org": org})
        # Popularity: a Zipf-like skew, and a different order for stars (trending repos).
        self.repo_weights = [1 / (rank + 1) ** 0.9 for rank in range(len(self.repos))]
        self.star_weights = self.repo_weights[:]
        rng.shuffle(self.star_weights)
        self.user_weights = [1 / (rank + 1) ** 0.8 for rank in range(len(self.users))]
        # Cumulative weights, computed once: random.choices is then O(log n) per draw.
        self.repo_cum = list(itertools.accumulate(self.repo_weights))
        self.star_cum = list(itertools.accumulate(self.star_weights))
        self.user_cum = list(itertools.accumulate(self.user_weights))
        self.kinds = [kind for kind, _ in EVENT_MIX]
        self.kind_cum = list(itertools.accumulate(share for _, share in EVENT_MIX))

    @staticmethod
    def _account(uid: int, login: str) -> dict[str, Any]:
        display = login.removesuffix("[bot]")
        return {
            "id": uid,
            "login": login,
            "display_login": display,
            "gravatar_id": "",
            "url": f"{API}/users/{login}",
            "avatar_url": f"{AVATARS}/u/{uid}?",
        }


_WORLDS: dict[int, _World] = {}


def _world(seed: int) -> _World:
    if seed not in _WORLDS:
        _WORLDS[seed] = _World(seed)
    return _WORLDS[seed]


def events_in_hour(hour: int, average: int, date: str = SAMPLE_DATE) -> int:
    """A daily curve, quietest around 03:00 UTC and busiest around 15:00 UTC, give or take
    8% (a fixed wobble per date and hour)."""
    curve = 1 + 0.45 * math.sin((hour - 9) / 24 * 2 * math.pi)
    digest = hashlib.sha256(f"{date}/{hour}".encode()).digest()
    wobble = 1 + 0.08 * (digest[0] / 127.5 - 1)
    return max(1, round(average * curve * wobble))


class _HourWriter:
    """Builds the events of one hour with its own random stream."""

    def __init__(self, world: _World, date: str, hour: int, seed: int) -> None:
        self.world = world
        self.date = date
        self.hour = hour
        digest = hashlib.sha256(f"{seed}/{date}/{hour}".encode()).digest()
        self.rng = random.Random(int.from_bytes(digest[:8], "big"))
        # Real ids grow by roughly 200,000 events an hour.
        base = 34_500_000_000 + (int(date.replace("-", "")) % 10_000) * 5_000_000
        self.next_id = base + hour * 200_000

    def stamp(self, second: int) -> str:
        return f"{self.date}T{self.hour:02d}:{second // 60:02d}:{second % 60:02d}Z"

    def actor_for(self, kind: str) -> dict[str, Any]:
        rng = self.rng
        bot_share = {"PushEvent": 0.25, "PullRequestEvent": 0.3, "CreateEvent": 0.2}.get(kind, 0)
        if rng.random() < bot_share:
            return rng.choices(self.world.bots, weights=[6, 3, 2, 1])[0]
        return rng.choices(self.world.users, cum_weights=self.world.user_cum)[0]

    def user_object(self, actor: dict[str, Any]) -> dict[str, Any]:
        login = actor["login"]
        return {
            "login": login,
            "id": actor["id"],
            "node_id": f"MDQ6VXNlcj{actor['id']}",
            "avatar_url": f"{AVATARS}/u/{actor['id']}?v=4",
            "gravatar_id": "",
            "url": actor["url"],
            "html_url": f"https://github.com/{login}",
            "type": "Bot" if login.endswith("[bot]") else "User",
            "site_admin": False,
        }

    def issue(self, repo: dict[str, Any], actor: dict[str, Any], created: str) -> dict[str, Any]:
        number = self.rng.randint(1, 4000)
        url = f"{API}/repos/{repo['name']}/issues/{number}"
        return {
            "url": url,
            "repository_url": f"{API}/repos/{repo['name']}",
            "html_url": f"https://github.com/{repo['name']}/issues/{number}",
            "id": self.rng.randint(1_000_000_000, 2_100_000_000),
            "node_id": f"I_kwDO{self.rng.getrandbits(40):010x}",
            "number": number,
            "title": f"{self.rng.choice(_MESSAGES).format(n=number, owner=actor['login'])}",
            "user": self.user_object(actor),
            "labels": [],
            "state": "open",
            "locked": False,
            "assignee": None,
            "assignees": [],
            "comments": self.rng.randint(0, 12),
            "created_at": created,
            "updated_at": created,
            "closed_at": None,
            "author_association": self.rng.choice(["NONE", "CONTRIBUTOR", "MEMBER", "OWNER"]),
            "body": None,
        }

    def pull_request(
        self, repo: dict[str, Any], actor: dict[str, Any], created: str, number: int
    ) -> dict[str, Any]:
        head = _sha(self.rng)
        return {
            "url": f"{API}/repos/{repo['name']}/pulls/{number}",
            "id": self.rng.randint(1_000_000_000, 2_100_000_000),
            "html_url": f"https://github.com/{repo['name']}/pull/{number}",
            "number": number,
            "state": "open",
            "locked": False,
            "title": self.rng.choice(_MESSAGES).format(n=number, owner=actor["login"]),
            "user": self.user_object(actor),
            "body": None,
            "created_at": created,
            "updated_at": created,
            "closed_at": None,
            "merged_at": None,
            "head": {
                "label": f"{actor['login']}:patch-{number}",
                "ref": f"patch-{number}",
                "sha": head,
            },
            "base": {
                "label": f"{repo['name'].split('/')[0]}:main",
                "ref": "main",
                "sha": _sha(self.rng),
            },
            "draft": self.rng.random() < 0.1,
            "merged": False,
            "commits": self.rng.randint(1, 6),
            "additions": self.rng.randint(1, 400),
            "deletions": self.rng.randint(0, 200),
            "changed_files": self.rng.randint(1, 12),
        }

    def push(self, repo: dict[str, Any], actor: dict[str, Any]) -> dict[str, Any]:
        """A PushEvent's payload: mostly one commit, at most 20 listed."""
        rng = self.rng
        roll = rng.random()
        size = 1 if roll < 0.7 else rng.randint(2, 6) if roll < 0.97 else rng.randint(21, 60)
        commits = []
        for _ in range(min(size, 20)):  # GitHub lists at most 20 commits of a push
            sha = _sha(rng)
            commits.append(
                {
                    "sha": sha,
                    "author": {
                        "email": f"{actor['id']}+{actor['display_login']}@users.noreply.github.com",
                        "name": actor["display_login"],
                    },
                    "message": rng.choice(_MESSAGES).format(
                        n=rng.randint(1, 999), owner=actor["login"]
                    ),
                    "distinct": rng.random() < 0.95,
                    "url": f"{API}/repos/{repo['name']}/commits/{sha}",
                }
            )
        return {
            "repository_id": repo["id"],
            "push_id": rng.randint(16_000_000_000, 16_999_999_999),
            "size": size,
            "distinct_size": sum(c["distinct"] for c in commits) + max(0, size - 20),
            "ref": rng.choice(
                ["refs/heads/main", "refs/heads/main", "refs/heads/dev", "refs/heads/gh-pages"]
            ),
            "head": commits[-1]["sha"],
            "before": _sha(rng),
            "commits": commits,
        }

    def payload(
        self, kind: str, repo: dict[str, Any], actor: dict[str, Any], created: str
    ) -> dict[str, Any]:
        rng = self.rng
        if kind == "PushEvent":
            return self.push(repo, actor)
        if kind == "WatchEvent":
            return {"action": "started"}
        if kind == "CreateEvent":
            ref_type = rng.choice(["branch", "branch", "branch", "tag", "repository"])
            return {
                "ref": None if ref_type == "repository" else f"{ref_type}-{rng.randint(1, 99)}",
                "ref_type": ref_type,
                "master_branch": "main",
                "description": None,
                "pusher_type": "user",
            }
        if kind == "DeleteEvent":
            return {
                "ref": f"patch-{rng.randint(1, 999)}",
                "ref_type": "branch",
                "pusher_type": "user",
            }
        if kind == "IssuesEvent":
            return {
                "action": rng.choice(["opened", "opened", "closed", "reopened"]),
                "issue": self.issue(repo, actor, created),
            }
        if kind == "IssueCommentEvent":
            issue = self.issue(repo, actor, created)
            comment_id = rng.randint(1_800_000_000, 1_999_999_999)
            return {
                "action": "created",
                "issue": issue,
                "comment": {
                    "url": f"{API}/repos/{repo['name']}/issues/comments/{comment_id}",
                    "html_url": f"{issue['html_url']}#issuecomment-{comment_id}",
                    "id": comment_id,
                    "user": self.user_object(actor),
                    "created_at": created,
                    "updated_at": created,
                    "author_association": issue["author_association"],
                    "body": rng.choice(["LGTM", "Thanks!", "Can you add a test?", "+1"]),
                },
            }
        if kind == "PullRequestEvent":
            number = rng.randint(1, 9000)
            return {
                "action": rng.choice(["opened", "opened", "closed", "reopened"]),
                "number": number,
                "pull_request": self.pull_request(repo, actor, created, number),
            }
        if kind in ("PullRequestReviewEvent", "PullRequestReviewCommentEvent"):
            number = rng.randint(1, 9000)
            pr = self.pull_request(repo, actor, created, number)
            item_id = rng.randint(1_700_000_000, 1_899_999_999)
            if kind == "PullRequestReviewEvent":
                review = {
                    "id": item_id,
                    "user": self.user_object(actor),
                    "body": None,
                    "state": rng.choice(["approved", "commented", "changes_requested"]),
                    "submitted_at": created,
                    "html_url": f"{pr['html_url']}#pullrequestreview-{item_id}",
                }
                return {"action": "created", "review": review, "pull_request": pr}
            comment = {
                "id": item_id,
                "user": self.user_object(actor),
                "body": "nit: naming",
                "path": "src/main.py",
                "created_at": created,
                "updated_at": created,
                "html_url": f"{pr['html_url']}#discussion_r{item_id}",
            }
            return {"action": "created", "comment": comment, "pull_request": pr}
        if kind == "ForkEvent":
            fork_id = rng.randint(700_000_000, 750_000_000)
            short = repo["name"].split("/")[1]
            return {
                "forkee": {
                    "id": fork_id,
                    "node_id": f"R_kgDO{rng.getrandbits(32):08x}",
                    "name": short,
                    "full_name": f"{actor['login']}/{short}",
                    "private": False,
                    "owner": self.user_object(actor),
                    "html_url": f"https://github.com/{actor['login']}/{short}",
                    "description": None,
                    "fork": True,
                    "url": f"{API}/repos/{actor['login']}/{short}",
                    "created_at": created,
                    "updated_at": created,
                    "pushed_at": created,
                    "stargazers_count": 0,
                    "forks_count": 0,
                    "default_branch": "main",
                    "public": True,
                }
            }
        if kind == "ReleaseEvent":
            tag = f"v{rng.randint(0, 5)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}"
            return {
                "action": "published",
                "release": {
                    "id": rng.randint(130_000_000, 140_000_000),
                    "tag_name": tag,
                    "name": tag,
                    "draft": False,
                    "prerelease": False,
                    "created_at": created,
                    "published_at": created,
                    "author": self.user_object(actor),
                    "html_url": f"https://github.com/{repo['name']}/releases/tag/{tag}",
                },
            }
        if kind == "GollumEvent":
            return {
                "pages": [
                    {
                        "page_name": "Home",
                        "title": "Home",
                        "summary": None,
                        "action": "edited",
                        "sha": _sha(rng),
                        "html_url": f"https://github.com/{repo['name']}/wiki/Home",
                    }
                ]
            }
        if kind == "MemberEvent":
            return {"member": self.user_object(rng.choice(self.world.users)), "action": "added"}
        if kind == "CommitCommentEvent":
            return {
                "comment": {
                    "id": rng.randint(130_000_000, 140_000_000),
                    "commit_id": _sha(rng),
                    "user": self.user_object(actor),
                    "body": "Nice!",
                    "created_at": created,
                }
            }
        return {}  # PublicEvent

    def event(self, second: int) -> dict[str, Any]:
        rng = self.rng
        world = self.world
        kind = rng.choices(world.kinds, cum_weights=world.kind_cum)[0]
        weights = world.star_cum if kind == "WatchEvent" else world.repo_cum
        repo = rng.choices(world.repos, cum_weights=weights)[0]
        actor = self.actor_for(kind)
        created = self.stamp(second)
        self.next_id += rng.randint(1, 40)
        event: dict[str, Any] = {
            "id": str(self.next_id),
            "type": kind,
            "actor": actor,
            "repo": {"id": repo["id"], "name": repo["name"], "url": f"{API}/repos/{repo['name']}"},
            "payload": self.payload(kind, repo, actor, created),
            "public": True,
            "created_at": created,
        }
        if repo["org"] is not None:
            event["org"] = repo["org"]
        return event

    def lines(self, count: int, malformed: int) -> list[bytes]:
        seconds = sorted(self.rng.randrange(3600) for _ in range(count))
        lines = [json.dumps(self.event(s), separators=(",", ":")).encode() for s in seconds]
        bad = [
            lambda line: line[: len(line) // 2],  # a truncated event
            lambda line: b"\x00\x00 not json at all",
            lambda line: b'{"id":"1","type":"PushEvent","actor":"\xff\xfe"}',  # bad UTF-8
            lambda line: b'["an", "array", "is not an event"]',
        ]
        for n in range(malformed):
            where = self.rng.randrange(len(lines) + 1)
            victim = lines[min(where, len(lines) - 1)]
            lines.insert(where, bad[(self.hour + n) % len(bad)](victim))
        return lines


def hour_file_name(date: str, hour: int) -> str:
    """GH Archive's name of an hour file: `2024-01-15-3.json.gz` (the hour not padded)."""
    return f"{date}-{hour}.json.gz"


def malformed_in_hour(hour: int) -> int:
    """Malformed lines planted in the hour: none in most hours, one or two in some."""
    return (1 if hour % 5 == 2 else 0) + (1 if hour % 7 == 3 else 0)


def write_hour(
    path: Path, date: str, hour: int, events: int, malformed: int = 0, seed: int = SAMPLE_SEED
) -> None:
    """Write one hour file (atomically): `events` events plus `malformed` bad lines."""
    lines = _HourWriter(_world(seed), date, hour, seed).lines(events, malformed)
    tmp = path.with_name(path.name + ".tmp")
    # mtime=0 and no file name in the header: the bytes depend only on the events (and zlib).
    try:
        with (
            open(tmp, "wb") as raw,
            gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as out,
        ):
            out.write(b"".join(line + b"\n" for line in lines))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def generate(
    directory: str | os.PathLike[str],
    date: str = SAMPLE_DATE,
    hours: Iterable[int] = range(24),
    events_per_hour: int = SAMPLE_EVENTS_PER_HOUR,
    seed: int = SAMPLE_SEED,
    malformed: bool = True,
) -> list[Path]:
    """Write the sample hour files of `date` into `directory` (kept if already there).

    `events_per_hour` is the daily average; each hour follows the daily curve. Returns the
    paths, in hour order. The same arguments always give the same bytes.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for hour in hours:
        path = folder / hour_file_name(date, hour)
        if not path.exists():
            count = events_in_hour(hour, events_per_hour, date)
            write_hour(path, date, hour, count, malformed_in_hour(hour) if malformed else 0, seed)
        paths.append(path)
    return paths


__all__ = ["SAMPLE_DATE", "events_in_hour", "generate", "hour_file_name", "write_hour"]
