"""The job functions of the GitHub Archive pipeline.

One workflow per date range: `download_hour` per hour file, `aggregate_hour` per file (it
depends on that hour's download), `merge` (depends on every aggregate), `report` (depends on
the merge). Jobs pass file paths and small summaries: the full hourly counts (every
repository and actor seen) go to gzip JSON files next to the data, so a job result stays far
below GigQ's 1 MiB cap even on real hours of 200,000 events.

Every job is safe to run twice (GigQ delivers at least once): files are written to a
temporary name and renamed into place, and a finished download is not fetched again.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from gigq import Abort, current_job

#: Where GH Archive publishes hour files: `{base}/2024-01-15-3.json.gz`.
GHARCHIVE_URL = "https://data.gharchive.org"
USER_AGENT = "gigq-github-archive-example/1.0 (+https://github.com/gigq)"
#: Top-N lists kept in summaries and reports.
TOP = 10
#: Malformed lines quoted per hour in the report.
SAMPLES_PER_HOUR = 3
#: Counted per repository, per actor: the keys of an hourly aggregate file.
TABLES = ("repos", "stars", "actors", "pushes", "commits")

GZIP_MAGIC = b"\x1f\x8b"


# -- small helpers ----------------------------------------------------------------------------


def hour_key(hour: str) -> datetime:
    """The datetime of a GH Archive hour name (`2024-01-15-3`), for sorting."""
    return datetime.strptime(hour, "%Y-%m-%d-%H")


def top(counts: dict[str, int], n: int = TOP) -> list[tuple[str, int]]:
    """The n largest counts, ties broken by name (so reports are deterministic)."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:n]


def is_bot(login: str) -> bool:
    """GitHub's app accounts end in `[bot]` (github-actions[bot], dependabot[bot], ...)."""
    return login.endswith("[bot]")


def _write_json_gz(path: Path, data: Any) -> None:
    """Write gzip JSON atomically: a reader (or a re-run) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=5) as out:
        json.dump(data, out, separators=(",", ":"), sort_keys=True)
    os.replace(tmp, path)


def read_json_gz(path: str | Path) -> Any:
    """Read a file written by `_write_json_gz` (the hourly and merged counts)."""
    with gzip.open(path, "rt", encoding="utf-8") as src:
        return json.load(src)


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _only_parent(parent_results: dict[str, Any]) -> Any:
    if len(parent_results) != 1:
        raise Abort(f"expected the result of exactly one download, got {len(parent_results)}")
    return next(iter(parent_results.values()))


def _by_hour(parent_results: dict[str, Any]) -> list[dict[str, Any]]:
    results = [r for r in parent_results.values() if isinstance(r, dict) and "hour" in r]
    return sorted(results, key=lambda r: hour_key(r["hour"]))


# -- download -------------------------------------------------------------------------------


def _fetch(url: str, dest: Path, timeout: float) -> int:
    """Stream `url` to `dest` through a temporary file; returns the bytes written."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as resp:
            expected = resp.headers.get("Content-Length")
            written = 0
            last_beat = time.monotonic()
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                written += len(chunk)
                if time.monotonic() - last_beat > 5:  # a long download: renew the lease now
                    with contextlib.suppress(Exception):
                        current_job().heartbeat()
                    last_beat = time.monotonic()
            out.flush()
            os.fsync(out.fileno())
        if expected is not None and int(expected) != written:
            raise ConnectionError(f"{url}: got {written} of {expected} bytes")
        with open(tmp, "rb") as check:
            if check.read(2) != GZIP_MAGIC:
                raise Abort(f"{url} did not return a gzip file")
        os.replace(tmp, dest)
        return written
    finally:
        tmp.unlink(missing_ok=True)


def download_hour(
    hour: str,
    data_dir: str,
    source_dir: str | None = None,
    base_url: str = GHARCHIVE_URL,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Fetch one GH Archive hour file; returns {"hour", "path", "bytes", "origin"}.

    With `source_dir`, the file already downloaded there is used in place (no copy). Else
    `{base_url}/{hour}.json.gz` is streamed to `data_dir` (kept if a previous attempt
    finished it). A network error or a server error (5xx, 429) raises, so GigQ retries the
    job with backoff; an hour that does not exist (404: GH Archive has a few gaps, and no
    future hours) completes with "missing", so the rest of the range is still reported.
    """
    name = f"{hour}.json.gz"
    if source_dir is not None:
        path = Path(source_dir) / name
        if not path.is_file():
            return {"hour": hour, "path": None, "missing": f"{path} does not exist"}
        return {"hour": hour, "path": str(path), "bytes": path.stat().st_size, "origin": "local"}
    dest = Path(data_dir) / name
    if dest.is_file():
        return {"hour": hour, "path": str(dest), "bytes": dest.stat().st_size, "origin": "cache"}
    url = f"{base_url.rstrip('/')}/{name}"
    try:
        size = _fetch(url, dest, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return {"hour": hour, "path": None, "missing": f"{url}: 404 Not Found"}
        if exc.code == 429 or exc.code >= 500:
            raise ConnectionError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        raise Abort(f"{url}: HTTP {exc.code} {exc.reason}") from None
    return {"hour": hour, "path": str(dest), "bytes": size, "origin": url}


# -- aggregate ------------------------------------------------------------------------------


def iter_events(path: str | Path, stats: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Stream the events of a GH Archive hour file, line by line (memory stays flat).

    A line that is not a JSON object with a string `type` is counted in stats["malformed"]
    (its line number and start kept in stats["samples"]) and skipped; blank lines are
    skipped. A file cut short (a truncated download) ends the stream with
    stats["truncated"] set, keeping the events read so far.
    """
    stats.setdefault("malformed", 0)
    stats.setdefault("samples", [])
    stats.setdefault("truncated", None)
    number = 0
    try:
        with gzip.open(path, "rb") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError:  # JSONDecodeError, and UnicodeDecodeError for bad UTF-8
                    event = None
                if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                    stats["malformed"] += 1
                    if len(stats["samples"]) < SAMPLES_PER_HOUR:
                        text = line[:60].decode("utf-8", "backslashreplace").rstrip()
                        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
                        text = text.replace("`", "'")  # quoted in Markdown code spans
                        stats["samples"].append({"line": number, "start": text})
                    continue
                yield event
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        stats["truncated"] = f"after line {number}: {exc}"


def aggregate_file(path: str | Path) -> dict[str, Any]:
    """The counts of one hour file: events by type, events per repository, stars (WatchEvent)
    per repository, events per actor, pushes and commits per repository, malformed lines."""
    stats: dict[str, Any] = {}
    by_type: Counter[str] = Counter()
    repos: Counter[str] = Counter()
    stars: Counter[str] = Counter()
    actors: Counter[str] = Counter()
    pushes: Counter[str] = Counter()
    commits: Counter[str] = Counter()
    first = last = None
    for event in iter_events(path, stats):
        kind = event["type"]
        by_type[kind] += 1
        repo = (event.get("repo") or {}).get("name") or "(unknown)"
        login = (event.get("actor") or {}).get("login") or "(unknown)"
        repos[repo] += 1
        actors[login] += 1
        if kind == "WatchEvent":
            stars[repo] += 1
        elif kind == "PushEvent":
            payload = event.get("payload") or {}
            pushes[repo] += 1
            # `size` counts every commit of the push; the `commits` list stops at 20.
            size = payload.get("size")
            commits[repo] += size if isinstance(size, int) else len(payload.get("commits") or [])
        created = event.get("created_at")
        if isinstance(created, str):
            first = created if first is None or created < first else first
            last = created if last is None or created > last else last
    return {
        "events": sum(by_type.values()),
        "malformed": stats["malformed"],
        "malformed_samples": stats["samples"],
        "truncated": stats["truncated"],
        "by_type": dict(by_type),
        "repos": dict(repos),
        "stars": dict(stars),
        "actors": dict(actors),
        "pushes": dict(pushes),
        "commits": dict(commits),
        "first_event": first,
        "last_event": last,
    }


def aggregate_hour(hour: str, work_dir: str, parent_results: dict[str, Any]) -> dict[str, Any]:
    """Count one downloaded hour file; the full counts go to WORK_DIR/HOUR.json.gz, and the
    result is a small summary with that file's path."""
    download = _only_parent(parent_results)
    if not download.get("path"):
        return {
            "hour": hour,
            "missing": download.get("missing", "not downloaded"),
            "events": 0,
            "malformed": 0,
            "by_type": {},
            "counts": None,
        }
    counts = aggregate_file(download["path"])
    counts["hour"] = hour
    target = Path(work_dir) / f"{hour}.json.gz"
    _write_json_gz(target, counts)
    return {
        "hour": hour,
        "file": download["path"],
        "events": counts["events"],
        "malformed": counts["malformed"],
        "truncated": counts["truncated"],
        "by_type": counts["by_type"],
        "top_starred": top(counts["stars"], 3),
        "counts": str(target),
    }


# -- merge ----------------------------------------------------------------------------------


def merge(work_dir: str, parent_results: dict[str, Any], top_n: int = TOP) -> dict[str, Any]:
    """Fan-in: add up the hourly counts; the full merged counts go to
    WORK_DIR/merged.json.gz, the result holds totals and top-N lists for the report."""
    hours = _by_hour(parent_results)
    by_type: Counter[str] = Counter()
    tables: dict[str, Counter[str]] = {name: Counter() for name in TABLES}
    per_hour = []
    missing = []
    malformed_samples = []
    truncated = []
    for summary in hours:
        if summary.get("missing"):
            missing.append({"hour": summary["hour"], "reason": summary["missing"]})
            per_hour.append({"hour": summary["hour"], "events": None, "malformed": 0})
            continue
        counts = read_json_gz(summary["counts"])
        by_type.update(counts["by_type"])
        for name in TABLES:
            tables[name].update(counts[name])
        per_hour.append(
            {"hour": summary["hour"], "events": counts["events"], "malformed": counts["malformed"]}
        )
        malformed_samples += [{"hour": summary["hour"], **s} for s in counts["malformed_samples"]]
        if counts["truncated"]:
            truncated.append({"hour": summary["hour"], "reason": counts["truncated"]})
    merged = {
        "hours": [s["hour"] for s in hours],
        "events": sum(by_type.values()),
        "malformed": sum(h["malformed"] for h in per_hour),
        "by_type": dict(by_type),
        **{name: dict(table) for name, table in tables.items()},
    }
    target = Path(work_dir) / "merged.json.gz"
    _write_json_gz(target, merged)
    humans = {login: n for login, n in tables["actors"].items() if not is_bot(login)}
    return {
        "hours": len(hours),
        "first_hour": hours[0]["hour"] if hours else None,
        "last_hour": hours[-1]["hour"] if hours else None,
        "events": merged["events"],
        "malformed": merged["malformed"],
        "malformed_samples": malformed_samples[:top_n],
        "missing_hours": missing,
        "truncated_hours": truncated,
        "events_per_hour": per_hour,
        "events_by_type": dict(top(dict(by_type), len(by_type))),
        "distinct_repos": len(tables["repos"]),
        "distinct_actors": len(tables["actors"]),
        "stars": sum(tables["stars"].values()),
        "pushes": sum(tables["pushes"].values()),
        "commits": sum(tables["commits"].values()),
        "top_starred_repos": [{"repo": r, "stars": n} for r, n in top(tables["stars"], top_n)],
        "top_actors": [{"actor": a, "events": n} for a, n in top(tables["actors"], top_n)],
        "top_human_actors": [{"actor": a, "events": n} for a, n in top(humans, top_n)],
        "top_pushed_repos": [
            {"repo": r, "pushes": tables["pushes"][r], "commits": n}
            for r, n in top(tables["commits"], top_n)
        ],
        "counts": str(target),
    }


# -- report ---------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _chart(per_hour: list[dict[str, Any]], target: Path) -> str | None:
    """A PNG bar chart of events per hour, or the reason there is none."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (`pip install matplotlib` adds the chart)"
    values = [h["events"] or 0 for h in per_hour]
    if len(per_hour) <= 24:  # one day: label every hour
        ticks = list(range(len(per_hour)))
        labels = [per_hour[i]["hour"].rsplit("-", 1)[1] for i in ticks]
    else:  # longer: label about 24 of them, with the date
        ticks = list(range(0, len(per_hour), -(-len(per_hour) // 24)))
        labels = [per_hour[i]["hour"] for i in ticks]
    fig, ax = plt.subplots(figsize=(min(16, max(6, len(per_hour) * 0.35)), 3.5))
    ax.bar(range(len(values)), values, color="#2f81f7")
    ax.set_xticks(ticks, labels, rotation=0 if len(per_hour) <= 24 else 90)
    ax.set_xlabel("hour (UTC)")
    ax.set_ylabel("events")
    ax.set_title(f"GitHub events per hour, {per_hour[0]['hour']} to {per_hour[-1]['hour']}")
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, target)
    return None


def report(out_dir: str, title: str, source: str, parent_results: dict[str, Any]) -> dict[str, Any]:
    """Write OUT_DIR/report.md, OUT_DIR/summary.json and, with matplotlib,
    OUT_DIR/events-per-hour.png; returns their paths."""
    summary = _only_parent(parent_results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chart = out / "events-per-hour.png"
    no_chart = (
        _chart(summary["events_per_hour"], chart) if summary["events_per_hour"] else "no hours"
    )
    data = {k: v for k, v in summary.items() if k != "counts"}
    data.update(
        {
            "title": title,
            "source": source,
            "merged_counts": summary["counts"],
            "chart": None if no_chart else chart.name,
        }
    )
    _write_text(out / "summary.json", json.dumps(data, indent=2) + "\n")

    s = summary
    md = [
        f"# {title}",
        "",
        f"Source: {source}. Hours: {s['hours']} ({s['first_hour']} to {s['last_hour']}, UTC).",
        "",
        f"- **{s['events']:,}** events by **{s['distinct_actors']:,}** actors in "
        f"**{s['distinct_repos']:,}** repositories",
        f"- **{s['stars']:,}** stars (WatchEvent), **{s['pushes']:,}** pushes carrying "
        f"**{s['commits']:,}** commits",
        f"- **{s['malformed']:,}** malformed lines skipped"
        + (f"; missing hours: **{len(s['missing_hours'])}**" if s["missing_hours"] else ""),
        "",
        "## Events per hour",
        "",
        f"![events per hour]({chart.name})" if not no_chart else f"_No chart: {no_chart}._",
        "",
        _table(
            ["hour (UTC)", "events", "malformed"],
            [
                [
                    h["hour"],
                    "missing" if h["events"] is None else f"{h['events']:,}",
                    h["malformed"],
                ]
                for h in s["events_per_hour"]
            ],
        ),
        "",
        "## Events by type",
        "",
        _table(
            ["type", "events", "share"],
            [
                [t, f"{n:,}", f"{n / max(1, s['events']):.1%}"]
                for t, n in s["events_by_type"].items()
            ],
        ),
        "",
        "## Top repositories by stars",
        "",
        _table(
            ["#", "repository", "stars"],
            [
                [i, f"[{r['repo']}](https://github.com/{r['repo']})", r["stars"]]
                for i, r in enumerate(s["top_starred_repos"], 1)
            ],
        ),
        "",
        "## Top repositories by commits pushed",
        "",
        _table(
            ["#", "repository", "commits", "pushes"],
            [
                [i, r["repo"], r["commits"], r["pushes"]]
                for i, r in enumerate(s["top_pushed_repos"], 1)
            ],
        ),
        "",
        "## Most active actors",
        "",
        _table(
            ["#", "actor", "events"],
            [[i, a["actor"], a["events"]] for i, a in enumerate(s["top_actors"], 1)],
        ),
        "",
        "Without bots:",
        "",
        _table(
            ["#", "actor", "events"],
            [[i, a["actor"], a["events"]] for i, a in enumerate(s["top_human_actors"], 1)],
        ),
        "",
    ]
    if s["missing_hours"] or s["truncated_hours"] or s["malformed_samples"]:
        md += ["## Data problems", ""]
        md += [f"- {m['hour']}: missing ({m['reason']})" for m in s["missing_hours"]]
        md += [f"- {t['hour']}: file cut short, {t['reason']}" for t in s["truncated_hours"]]
        md += [
            f"- {m['hour']} line {m['line']}: malformed, starts `{m['start']}`"
            for m in s["malformed_samples"]
        ]
        md.append("")
    md += [f"Full counts per repository and actor: `{s['counts']}`.", ""]
    _write_text(out / "report.md", "\n".join(md))
    return {
        "report": str(out / "report.md"),
        "summary": str(out / "summary.json"),
        "chart": None if no_chart else str(chart),
        "no_chart": no_chart,
        "events": s["events"],
    }


__all__ = ["aggregate_file", "aggregate_hour", "download_hour", "iter_events", "merge", "report"]
