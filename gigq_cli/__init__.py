"""The `gigq` command."""

from __future__ import annotations

from gigq_cli.main import CliContext, create_cli, main

__all__ = ["CliContext", "create_cli", "main"]
