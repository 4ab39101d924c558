"""`python -m gigq_cli` runs the `gigq` command."""

from __future__ import annotations

from gigq_cli.main import main

if __name__ == "__main__":
    main()
