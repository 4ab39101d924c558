"""The root group, its context, error handling, and the console script's `main()`."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import click

if TYPE_CHECKING:
    from gigq_core.plugins import GigQPluginManager
    from gigq_core.queue import JobQueue

#: Global options accepted after the command name too, and moved in front of it.
_GLOBAL_FLAGS = ("--json",)
_GLOBAL_VALUES = ("--db",)


@attrs.frozen
class CliContext:
    """What every command needs: where the queue is, output mode, the plugin manager."""

    #: Path or URL of the queue (None: `$GIGQ_DB`, else `gigq.db`).
    target: str | None
    #: Machine output.
    json: bool
    pm: GigQPluginManager

    def open_queue(
        self,
        create: bool = False,
        *,
        missing: str = "",
        create_folders: bool = False,
        **settings: Any,
    ) -> JobQueue:
        """Open the queue; `create=False` refuses a missing database, adding `missing` (what
        to do instead) to the sentence. `create_folders` lets a new SQLite database's
        missing folders be made (otherwise the setting of that name decides: off)."""
        from gigq_core.errors import DatabaseNotFoundError, UserError
        from gigq_core.queue import JobQueue

        target = self.target
        if target is not None and "://" not in target and os.path.isdir(target):
            # SQLite would only say "unable to open database file" (an I/O error, 74).
            raise UserError(
                f"--db {target} is a directory; give the path of a database file in it, "
                f"e.g. --db {os.path.join(target, 'gigq.db')}"
            )
        if create_folders:
            settings["create_folders"] = True
        try:
            queue = JobQueue(self.target, plugin_manager=self.pm, create=create, **settings)
        except DatabaseNotFoundError as err:
            if create or not missing:
                raise  # with create, only a missing folder can be the reason
            raise DatabaseNotFoundError(f"{err}; {missing}") from None
        # A storage opens (and creates) its database as it is made: say a new one at once.
        if getattr(queue.storage, "created", False):
            from gigq_cli._format import echo

            where = os.path.abspath(getattr(queue.storage, "path", queue.target))
            echo(f"created a new queue at {where}", err=True)
        return queue

    def add_cwd_to_path(self) -> None:
        """Let job functions be imported from the current directory, as users expect of
        `submit` and `worker`; only commands that import job functions call it.

        The directory is appended to `sys.path`, not put first: a module there (a stray
        `tabulate.py`, say) never shadows an installed one.
        """
        try:
            cwd = os.getcwd()
        except OSError:  # the directory was removed: nothing to import from
            return
        if "" not in sys.path and cwd not in sys.path:
            sys.path.append(cwd)


pass_cli = click.make_pass_decorator(CliContext)


def _hoist_globals(args: list[str]) -> list[str]:
    """Move global options given after the command name in front of it."""
    front: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            rest.extend(args[index:])
            break
        if arg in _GLOBAL_FLAGS:
            front.append(arg)
        elif arg in _GLOBAL_VALUES and index + 1 < len(args):
            front.extend(args[index : index + 2])
            index += 1
        elif any(arg.startswith(v + "=") for v in _GLOBAL_VALUES):
            front.append(arg)
        else:
            rest.append(arg)
        index += 1
    return front + rest


class GigQGroup(click.Group):
    """The root group: turns GigQ errors into one sentence and their exit code."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _hoist_globals(args))

    def invoke(self, ctx: click.Context) -> Any:
        from gigq_cli._format import echo
        from gigq_core.errors import GigQError

        try:
            return super().invoke(ctx)
        except GigQError as err:
            # The message may quote stored text (names, worker ids): printed escaped.
            echo(f"Error: {err}", err=True)
            ctx.exit(err.exit_code)


def create_cli(pm: GigQPluginManager | None = None) -> click.Group:
    """Build the `gigq` group: its options, then every command through
    `gigq_register_commands`, the built-in ones included (the plugin `gigq_cli.commands`,
    registered here unless its name is blocked)."""
    from gigq_cli import commands
    from gigq_core.plugins import Hooks, get_plugin_manager

    manager = pm or get_plugin_manager()
    if not manager.is_registered(commands):
        manager.register(commands)  # registers nothing if pm.set_blocked() names it

    @click.group(cls=GigQGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.option(
        "--db",
        "target",
        metavar="PATH|URL",
        default=None,
        help="The queue: a SQLite path or a URL. Default: $GIGQ_DB, else gigq.db.",
    )
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    @click.version_option(package_name="gigq", prog_name="gigq")
    @click.pass_context
    def cli(ctx: click.Context, target: str | None, as_json: bool) -> None:
        """GigQ: a job queue in one SQLite file, with no server."""
        ctx.obj = CliContext(target=target, json=as_json, pm=manager)

    # A plugin whose hook raises is reported and left out; every other command works.
    Hooks(manager).register_commands(cli)
    return cli


def main(argv: Sequence[str] | None = None) -> None:
    """The console script."""
    from gigq_core import execution

    # This process's __main__ is the gigq command itself: a job naming `__main__:main` must
    # not be able to run the CLI inside a worker.
    execution.main_targets_allowed = False
    cli = create_cli()
    cli.main(args=list(argv) if argv is not None else None, prog_name="gigq")


__all__ = ["CliContext", "GigQGroup", "create_cli", "main", "pass_cli"]
