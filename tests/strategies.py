"""Hypothesis strategies shared by the property tests."""

from __future__ import annotations

from hypothesis import strategies as st

#: Job priorities: a few values, so ties (and thus submit order) matter.
priorities = st.integers(min_value=-2, max_value=2)

#: Seconds a job waits before it may first run.
delays = st.sampled_from([0, 0, 0, 5, 45])

#: Unique keys: None mostly, else one of a small set so collisions happen.
unique_keys = st.one_of(st.none(), st.none(), st.sampled_from(["k1", "k2", "k3"]))

#: Scopes of a unique key.
unique_scopes = st.sampled_from(["active", "success"])

#: Attempts allowed per job.
max_attempts = st.integers(min_value=1, max_value=3)

#: Seconds a failed attempt waits before its retry.
retry_delays = st.sampled_from([0, 0, 5, 45])

#: How far the clock moves in one step; around the lease on purpose.
clock_steps = st.sampled_from([1, 5, 29, 30, 31, 60])

#: Statuses a prune may name.
prunable_statuses = st.lists(
    st.sampled_from(["completed", "failed", "cancelled", "timeout"]),
    min_size=1,
    max_size=4,
    unique=True,
)
