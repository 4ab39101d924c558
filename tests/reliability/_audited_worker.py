"""`python -m tests.reliability._audited_worker REPORT GIGQ-ARGS...`: `gigq GIGQ-ARGS` (a
worker, say) with the BEGIN IMMEDIATE audit on every connection it opens; at exit it writes
the audit's findings to REPORT as JSON."""

from __future__ import annotations

import atexit
import json
import os
import sys

from gigq_sqlite import _connection
from tests.reliability._audit import WriteAudit


def main(report: str, args: list[str]) -> None:
    """Run the CLI under the audit."""
    audit = WriteAudit()
    _connection.open_connection = audit.wrap(_connection.open_connection)  # type: ignore[misc]
    pid = os.getpid()

    def dump() -> None:
        if os.getpid() != pid:  # a forked pool child exiting: not ours to report
            return
        findings = {
            "connections": audit.connections,
            "writes": dict(audit.writes),
            "violations": [[v.transaction, v.sql] for v in audit.violations],
        }
        with open(report, "w", encoding="utf-8") as handle:
            json.dump(findings, handle)

    atexit.register(dump)
    from gigq_cli.main import main as gigq

    gigq(args)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
