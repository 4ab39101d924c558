"""Hour ranges, and the GigQ workflow of one date range.

`build(hours, ...)` returns a `Plan`: a `Workflow` with one download job per hour, one
aggregate job per hour (after its download), a merge job (after every aggregate) and a
report job (after the merge). Every job carries a unique key made of the range, the stage
and the hour, with `unique_scope="success"`: submitting the same range again returns the
ids of the jobs already completed or still pending instead of adding new ones, so a re-run
does only the work that is left (failed or cancelled jobs do not block their key, so they
are submitted anew).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from gigq import Job, JobQueue, Workflow

from . import tasks

#: The named queue of the pipeline's jobs (`gigq worker --queue gharchive` serves only it).
QUEUE = "gharchive"

_HOUR = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:-(\d{1,2}))?$")


def parse_hour(text: str, *, end: bool = False) -> datetime:
    """`2024-01-15-3` (GH Archive's form; `-03` too) as a datetime; a bare date means its
    first hour, or its last one when `end` is true."""
    match = _HOUR.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not an hour like 2024-01-15-3 or a date like 2024-01-15")
    day = datetime.strptime(match.group(1), "%Y-%m-%d")
    if match.group(2) is None:
        return day + timedelta(hours=23 if end else 0)
    hour = int(match.group(2))
    if hour > 23:
        raise ValueError(f"{text!r}: the hour must be 0 to 23")
    return day + timedelta(hours=hour)


def hour_name(moment: datetime) -> str:
    """GH Archive's name of the hour: `2024-01-15-3` (the hour not zero-padded)."""
    return f"{moment:%Y-%m-%d}-{moment.hour}"


def hour_range(start: str, end: str | None = None) -> list[str]:
    """Every hour from `start` to `end`, both included (`end` defaults to `start`)."""
    first = parse_hour(start)
    last = parse_hour(end if end is not None else start, end=True)
    if last < first:
        raise ValueError(f"the range ends ({end}) before it starts ({start})")
    hours = []
    moment = first
    while moment <= last:
        hours.append(hour_name(moment))
        moment += timedelta(hours=1)
    return hours


@dataclass
class Plan:
    """The workflow of one range, and its jobs by stage."""

    hours: list[str]
    workflow: Workflow
    downloads: list[Job] = field(default_factory=list)
    aggregates: list[Job] = field(default_factory=list)
    merge: Job | None = None
    report: Job | None = None

    @property
    def jobs(self) -> list[Job]:
        """Every job, in the order `Workflow.submit_all` returns their ids."""
        return list(self.workflow.jobs)

    def submit(self, queue: JobQueue) -> dict[str, str]:
        """Submit the workflow (one transaction); returns job name -> id, where an id is the
        existing job's when its key was already done or in progress."""
        ids = self.workflow.submit_all(queue)
        return {job.name: job_id for job, job_id in zip(self.workflow.jobs, ids, strict=True)}


def range_scope(hours: Sequence[str], **config: object) -> str:
    """The prefix of the range's unique keys: its first and last hour, plus a digest of what
    else changes the results (source, directories), so two configurations never share."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]
    return f"gharchive:{hours[0]}..{hours[-1]}:{digest}"


def build(
    hours: Sequence[str],
    *,
    data_dir: str | Path,
    work_dir: str | Path,
    out_dir: str | Path,
    source_dir: str | Path | None = None,
    base_url: str = tasks.GHARCHIVE_URL,
    source_label: str | None = None,
    download_timeout: float = 60.0,
    top_n: int = tasks.TOP,
    generation: str = "",
) -> Plan:
    """The workflow of `hours`: download -> aggregate per hour, then merge, then report.

    `source_dir` reads hour files already there instead of downloading; `generation`, when
    set, makes the keys new (a forced re-run).
    """
    if not hours:
        raise ValueError("no hours to process")
    data_dir, work_dir, out_dir = (str(Path(p).resolve()) for p in (data_dir, work_dir, out_dir))
    source = str(Path(source_dir).resolve()) if source_dir is not None else None
    scope = range_scope(
        hours,
        source=source or base_url,
        data=data_dir,
        work=work_dir,
        out=out_dir,
        generation=generation,
    )

    def key(stage: str, hour: str = "") -> dict[str, str]:
        return {"unique_key": f"{scope}:{stage}:{hour}", "unique_scope": "success"}

    flow = Workflow(f"gharchive {hours[0]}..{hours[-1]}")
    plan = Plan(hours=list(hours), workflow=flow)
    for hour in hours:
        download = flow.add_job(
            Job(
                f"download {hour}",
                tasks.download_hour,
                {
                    "hour": hour,
                    "data_dir": data_dir,
                    "source_dir": source,
                    "base_url": base_url,
                    "timeout": download_timeout,
                },
                max_attempts=5,
                retry=("exponential_jitter", {"base": 2, "cap": 120}),
                timeout=1800,
                queue=QUEUE,
                description=f"fetch GH Archive hour {hour}",
                **key("download", hour),
            )
        )
        plan.downloads.append(download)
        # Higher priority than downloads: each hour is counted as soon as it has arrived.
        aggregate = flow.add_job(
            Job(
                f"aggregate {hour}",
                tasks.aggregate_hour,
                {"hour": hour, "work_dir": work_dir},
                priority=1,
                max_attempts=2,
                retry_delay=1,
                timeout=1800,
                queue=QUEUE,
                description=f"count the events of hour {hour}",
                **key("aggregate", hour),
            ),
            depends_on=[download],
        )
        plan.aggregates.append(aggregate)
    plan.merge = flow.add_job(
        Job(
            "merge",
            tasks.merge,
            {"work_dir": work_dir, "top_n": top_n},
            priority=2,
            max_attempts=2,
            retry_delay=1,
            timeout=3600,
            queue=QUEUE,
            description="add up the hourly counts",
            **key("merge"),
        ),
        depends_on=plan.aggregates,
    )
    label = source_label or source or base_url
    plan.report = flow.add_job(
        Job(
            "report",
            tasks.report,
            {
                "out_dir": out_dir,
                "title": f"GitHub activity, {hours[0]} to {hours[-1]} (UTC)",
                "source": label,
            },
            priority=3,
            max_attempts=2,
            retry_delay=1,
            timeout=600,
            queue=QUEUE,
            description="write the Markdown and JSON report",
            **key("report"),
        ),
        depends_on=[plan.merge],
    )
    return plan


__all__ = ["QUEUE", "Plan", "build", "hour_name", "hour_range", "parse_hour"]
