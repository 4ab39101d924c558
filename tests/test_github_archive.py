"""The GitHub Archive example (examples/github_archive.py, examples/gharchive/): the pipeline's
aggregates equal a direct computation over the same files, re-runs submit nothing new, an
interrupted run finishes only what is left, malformed lines are counted, and the real
download code works against a local HTTP server."""

from __future__ import annotations

import gzip
import http.server
import importlib.util
import json
import re
import subprocess
import sys
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gigq import JobQueue, Worker

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SCRIPT = EXAMPLES / "github_archive.py"

# The example's package, imported once; the path is removed again so that examples/tasks.py
# never shadows another `tasks` module. Inline workers find `gharchive.tasks` in sys.modules.
sys.path.insert(0, str(EXAMPLES))
try:
    from gharchive import pipeline, sample, tasks
finally:
    sys.path.remove(str(EXAMPLES))

DATE = "2024-02-29"
HOURS = [2, 3, 4]  # hours 2 and 3 each carry one planted malformed line
EVENTS_PER_HOUR = 80


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A tiny sample: three hour files, a few hundred events, two malformed lines."""
    folder = tmp_path / "source"
    sample.generate(folder, date=DATE, hours=HOURS, events_per_hour=EVENTS_PER_HOUR)
    return folder


def hour_names() -> list[str]:
    return [f"{DATE}-{h}" for h in HOURS]


def build(tmp_path: Path, source: Path) -> pipeline.Plan:
    return pipeline.build(
        hour_names(),
        data_dir=tmp_path / "data",
        work_dir=tmp_path / "work",
        out_dir=tmp_path / "out",
        source_dir=source,
    )


def drain(db: Path, limit: int | None = None) -> int:
    """Run jobs inline until none is pending or running (retries included), or `limit` ran;
    returns how many attempts ran."""
    worker = Worker(str(db), executor="inline")
    ran = 0
    deadline = time.monotonic() + 30
    try:
        while limit is None or ran < limit:
            if worker.process_one():
                ran += 1
                continue
            stats = worker.queue.stats()
            if stats["pending"] == 0 and stats["running"] == 0:
                break
            assert time.monotonic() < deadline, stats
            time.sleep(0.05)  # a retry waits for its delay
    finally:
        worker.close()
    return ran


def direct_counts(paths: list[Path]) -> dict[str, Any]:
    """The aggregates computed the plain way: whole files in memory, one Counter each."""
    by_type: Counter[str] = Counter()
    repos: Counter[str] = Counter()
    stars: Counter[str] = Counter()
    actors: Counter[str] = Counter()
    pushes: Counter[str] = Counter()
    commits: Counter[str] = Counter()
    malformed = 0
    for path in paths:
        for line in gzip.decompress(path.read_bytes()).split(b"\n"):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
                kind = event["type"]
                assert isinstance(kind, str)
            except (ValueError, TypeError, KeyError, AssertionError):
                malformed += 1
                continue
            by_type[kind] += 1
            repos[event["repo"]["name"]] += 1
            actors[event["actor"]["login"]] += 1
            if kind == "WatchEvent":
                stars[event["repo"]["name"]] += 1
            if kind == "PushEvent":
                pushes[event["repo"]["name"]] += 1
                commits[event["repo"]["name"]] += event["payload"]["size"]
    return {
        "events": sum(by_type.values()),
        "malformed": malformed,
        "by_type": dict(by_type),
        "repos": dict(repos),
        "stars": dict(stars),
        "actors": dict(actors),
        "pushes": dict(pushes),
        "commits": dict(commits),
    }


def test_aggregates_match_a_direct_computation(tmp_path: Path, source: Path) -> None:
    db = tmp_path / "q.db"
    queue = JobQueue(str(db))
    names = build(tmp_path, source).submit(queue)
    assert len(names) == 2 * len(HOURS) + 2
    drain(db)
    statuses = queue.wait(list(names.values()), timeout=0)
    assert set(statuses.values()) == {"completed"}, statuses

    expected = direct_counts(sorted(source.glob("*.json.gz")))
    assert 100 < expected["events"] < 1000
    assert expected["malformed"] == 2
    merge = queue.get_result(names["merge"])
    merged = tasks.read_json_gz(merge["counts"])
    for key, value in expected.items():
        assert merged[key] == value, key
    assert merge["events"] == expected["events"]
    assert merge["malformed"] == 2
    assert [h["hour"] for h in merge["events_per_hour"]] == hour_names()
    assert merge["commits"] == sum(expected["commits"].values())
    assert merge["top_starred_repos"] == [
        {"repo": r, "stars": n} for r, n in tasks.top(expected["stars"], tasks.TOP)
    ]
    assert merge["top_actors"][0]["events"] == max(expected["actors"].values())

    report = queue.get_result(names["report"])
    summary = json.loads(Path(report["summary"]).read_text())
    assert summary["events"] == expected["events"]
    assert summary["events_by_type"] == dict(tasks.top(expected["by_type"], 100))
    text = Path(report["report"]).read_text()
    assert f"**{expected['events']:,}** events" in text
    assert "**2** malformed lines skipped" in text
    if importlib.util.find_spec("matplotlib") is None:  # the chart is skipped with a note
        assert report["chart"] is None
        assert "matplotlib is not installed" in report["no_chart"]
        assert "No chart: matplotlib is not installed" in text
    else:
        assert Path(report["chart"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "![events per hour](events-per-hour.png)" in text
    queue.close()


def test_rerun_submits_nothing_new(tmp_path: Path, source: Path) -> None:
    db = tmp_path / "q.db"
    queue = JobQueue(str(db))
    first = build(tmp_path, source).submit(queue)
    drain(db)
    again = build(tmp_path, source)  # new Job objects, new ids, same unique keys
    ids = again.submit(queue)
    assert ids == first
    assert all(job.id != ids[job.name] for job in again.jobs)
    assert queue.stats()["total"] == len(first)
    assert drain(db) == 0
    queue.close()


def test_interrupted_run_finishes_only_the_rest(tmp_path: Path, source: Path) -> None:
    db = tmp_path / "q.db"
    queue = JobQueue(str(db))
    first = build(tmp_path, source).submit(queue)
    assert drain(db, limit=4) == 4  # the run stops after four jobs
    done = {i for i, s in queue.wait(list(first.values()), timeout=0).items() if s == "completed"}
    assert len(done) == 4
    before = {i: queue.get_status(i)["completed_at"] for i in done}

    assert build(tmp_path, source).submit(queue) == first  # started again: nothing new
    assert drain(db) == len(first) - 4  # only the remaining jobs ran
    for job_id in first.values():
        status = queue.get_status(job_id)
        assert status["status"] == "completed"
        assert len(status["executions"]) == 1
    assert {i: queue.get_status(i)["completed_at"] for i in done} == before
    queue.close()


def test_a_failed_job_is_submitted_again_on_rerun(tmp_path: Path, source: Path) -> None:
    db = tmp_path / "q.db"
    queue = JobQueue(str(db))
    (tmp_path / "work").write_text("not a folder")  # aggregates cannot write their counts
    first = build(tmp_path, source).submit(queue)
    drain(db)
    statuses = queue.wait(list(first.values()), timeout=0)
    assert statuses[first["report"]] == "cancelled"
    (tmp_path / "work").unlink()
    again = build(tmp_path, source).submit(queue)
    for name, job_id in first.items():
        if name.startswith("download"):
            assert again[name] == job_id  # completed: kept
        else:
            assert again[name] != job_id  # failed or cancelled: submitted anew
    drain(db)
    assert queue.get_status(again["report"])["status"] == "completed"
    queue.close()


def test_malformed_lines_are_counted_not_fatal(tmp_path: Path) -> None:
    good = {"id": "1", "type": "WatchEvent", "actor": {"login": "a"}, "repo": {"name": "o/r"},
            "payload": {"action": "started"}, "created_at": "2024-01-01T00:00:00Z"}  # fmt: skip
    lines = [
        json.dumps(good).encode(),
        b"garbage",
        b"",
        b"[1, 2]",
        b'{"no": "type"}',
        b'{"type": "PushEvent", "actor": "\xff"}',
        json.dumps(good)[:20].encode(),
        json.dumps(good).encode(),
    ]
    path = tmp_path / "2024-01-01-0.json.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    counts = tasks.aggregate_file(path)
    assert counts["events"] == 2
    assert counts["malformed"] == 5
    assert counts["stars"] == {"o/r": 2}
    assert counts["truncated"] is None
    assert [s["line"] for s in counts["malformed_samples"]] == [2, 4, 5]

    cut = tmp_path / "2024-01-01-1.json.gz"
    whole = gzip.compress(b"\n".join([json.dumps(good).encode()] * 2000))
    cut.write_bytes(whole[: len(whole) // 2])  # a download cut short
    counts = tasks.aggregate_file(cut)
    assert counts["truncated"]
    assert 0 < counts["events"] < 2000


def test_aggregation_streams_memory_flat_in_the_file_size(tmp_path: Path) -> None:
    def peak(events: int) -> int:
        path = tmp_path / f"{events}.json.gz"
        with gzip.open(path, "wb") as out:
            for n in range(events):
                event = {
                    "id": str(n),
                    "type": "PushEvent",
                    "actor": {"login": "a"},
                    "repo": {"name": "o/r"},
                    "payload": {"size": 1, "pad": "x" * 500},
                }
                out.write(json.dumps(event).encode() + b"\n")
        tracemalloc.start()
        try:
            assert tasks.aggregate_file(path)["events"] == events
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(1_000), peak(10_000)  # about 0.5 MB and 5 MB of JSON
    assert large < 2 * small + 200_000, (small, large)


def test_sample_is_deterministic_and_in_gh_archive_format(tmp_path: Path) -> None:
    one = sample.generate(tmp_path / "one", date=DATE, hours=[3], events_per_hour=50)
    two = sample.generate(tmp_path / "two", date=DATE, hours=[3], events_per_hour=50)
    assert [p.name for p in one] == [f"{DATE}-3.json.gz"]
    data = gzip.decompress(one[0].read_bytes())
    assert data == gzip.decompress(two[0].read_bytes())
    events = []
    for line in data.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    events = [e for e in events if isinstance(e, dict)]
    assert len(events) > 20
    base = {"id", "type", "actor", "repo", "payload", "public", "created_at"}
    for event in events:
        assert set(event) in (base, base | {"org"})
        assert set(event["actor"]) == {
            "id", "login", "display_login", "gravatar_id", "url", "avatar_url"
        }  # fmt: skip
        assert set(event["repo"]) == {"id", "name", "url"}
        assert re.fullmatch(rf"{DATE}T03:\d\d:\d\dZ", event["created_at"])
        if event["type"] == "PushEvent":
            payload = event["payload"]
            assert {"push_id", "size", "distinct_size", "ref", "head", "before"} <= set(payload)
            assert len(payload["commits"]) == min(payload["size"], 20)
            assert set(payload["commits"][0]) == {"sha", "author", "message", "distinct", "url"}


def test_hour_ranges() -> None:
    assert pipeline.hour_range("2024-01-15-22", "2024-01-16-1") == [
        "2024-01-15-22", "2024-01-15-23", "2024-01-16-0", "2024-01-16-1"
    ]  # fmt: skip
    assert len(pipeline.hour_range("2024-01-15")) == 24
    assert pipeline.hour_range("2024-01-15-05") == ["2024-01-15-5"]
    with pytest.raises(ValueError):
        pipeline.hour_range("2024-01-15-3", "2024-01-15-2")
    with pytest.raises(ValueError):
        pipeline.hour_range("2024-01-15-24")


class _Archive(http.server.BaseHTTPRequestHandler):
    """A stand-in for data.gharchive.org: /ok/NAME serves NAME from the folder, /gone/ says
    404, /down/ says 503."""

    folder: Path

    def do_GET(self) -> None:
        kind, _, name = self.path.strip("/").partition("/")
        if kind == "ok" and (self.folder / name).is_file():
            body = (self.folder / name).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_error(503 if kind == "down" else 404)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def archive(source: Path) -> Iterator[str]:
    handler = type("Handler", (_Archive,), {"folder": source})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_download_streams_the_file_and_reports_missing_hours(
    tmp_path: Path, source: Path, archive: str
) -> None:
    hour = f"{DATE}-2"
    data = tmp_path / "data"
    got = tasks.download_hour(hour, str(data), base_url=f"{archive}/ok", timeout=5)
    assert Path(got["path"]).read_bytes() == (source / f"{hour}.json.gz").read_bytes()
    assert not list(data.glob(".*"))  # no temporary file left
    again = tasks.download_hour(hour, str(data), base_url=f"{archive}/down", timeout=5)
    assert again["origin"] == "cache"  # a finished download is not fetched again
    gone = tasks.download_hour(f"{DATE}-9", str(data), base_url=f"{archive}/gone", timeout=5)
    assert gone["path"] is None and "404" in gone["missing"]
    with pytest.raises(ConnectionError, match="503"):  # retried by the job's strategy
        tasks.download_hour(f"{DATE}-3", str(data), base_url=f"{archive}/down", timeout=5)


def run_script(tmp_path: Path, source: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, str(SCRIPT), "--source", str(source),
        "--start", f"{DATE}-{HOURS[0]}", "--end", f"{DATE}-{HOURS[-1]}",
        "--run-dir", str(tmp_path / "run"), *args,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)


@pytest.mark.process
def test_script_resumes_a_partial_run_with_local_workers(tmp_path: Path, source: Path) -> None:
    submitted = run_script(tmp_path, source, "--workers", "0")  # submit only
    assert submitted.returncode == 0, submitted.stderr
    assert "Submitted 8 jobs." in submitted.stdout
    db = tmp_path / "run" / "gharchive.db"
    assert drain(db, limit=3) == 3  # a first run that stopped after three jobs

    done = run_script(tmp_path, source, "--workers", "1", "--concurrency", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Submitted 0 new jobs; 8 were already there" in done.stdout
    report = re.search(r"Report:\s+(\S+)", done.stdout)
    assert report and Path(report.group(1)).is_file()
    queue = JobQueue(str(db))
    jobs = queue.list_jobs()
    assert len(jobs) == 8
    for job in jobs:
        status = queue.get_status(job["id"])
        assert status["status"] == "completed"
        assert len(status["executions"]) == 1  # nothing ran twice
    assert all(w.stopped_at for w in queue.workers()), "the script stops its workers"
    queue.close()

    again = run_script(tmp_path, source)
    assert again.returncode == 0, again.stderr
    assert "Nothing to do" in again.stdout
    assert "Started" not in again.stdout
