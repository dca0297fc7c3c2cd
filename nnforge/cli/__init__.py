"""The ``nnforge`` command line.

Every user error ends with exit status 2 and a short message on stderr; ``--debug`` shows
the traceback as well.  The commands live by group (``model_cmds``, ``quantize_cmds``,
``sweep_cmd``, ``project_cmds``, ``nnforge/explore/command.py``) and are registered below, in one
list; each keeps its heavy imports inside, so ``nnforge --help`` starts without TVM.
"""

from __future__ import annotations

import os
import sys
import warnings

import click
from rich.markup import escape

from nnforge.cli.common import err_console
from nnforge.compiler.errors import NNForgeError, shown


class _Group(click.Group):
    """Turns NNForgeError into a clean message and exit status 2, and Ctrl-C into one line and
    exit status 130 (128 + SIGINT, as shells report it)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except NNForgeError as err:
            if ctx.params.get("debug") or os.environ.get("NNFORGE_DEBUG_TRACEBACK"):
                raise
            err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
            sys.exit(err.exit_code)
        except OSError as err:
            # the last net for a path the system refuses (a name too long, a full disk, no permission)
            # where no check above named it: still one line, naming the file
            if err.filename is None or ctx.params.get("debug") or os.environ.get("NNFORGE_DEBUG_TRACEBACK"):
                raise
            err_console.print(f"[bold red]error:[/] {escape(shown(str(err.filename)))} must be accessible, not "
                              f"{escape(err.strerror or str(err))}", highlight=False, soft_wrap=True)
            sys.exit(2)
        except KeyboardInterrupt:
            if ctx.params.get("debug"):
                raise
            err_console.print("interrupted (Ctrl-C)", highlight=False, soft_wrap=True)
            sys.exit(130)


@click.group(cls=_Group)
@click.option("--debug", is_flag=True, help="Show full tracebacks.")
@click.option("--max-elements", type=click.IntRange(min=1), default=None, metavar="N",
              help="Most values one tensor of a model may hold (default 2^28 = 268,435,456).")
@click.version_option(package_name="nnforge")
@click.pass_context
def main(ctx: click.Context, debug: bool, max_elements: int | None) -> None:
    """nnforge: compile trained neural networks into bit-exact hardware sources."""
    from nnforge.compiler.frontend import limits
    from nnforge.compiler import spelling

    spelled = spelling.use_cli()  # errors name --force, not force=True, for this command
    ctx.call_on_close(lambda: spelling.reset(spelled))
    warnings.simplefilter("default" if debug else "ignore", DeprecationWarning)
    warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"
    if max_elements is not None:
        token = limits.set_cap(max_elements)
        ctx.call_on_close(lambda: limits.reset_cap(token))


def _register() -> None:
    from nnforge.cli.model_cmds import backends, inspect, run
    from nnforge.cli.project_cmds import compile_cmd, synth_cmd, verify_cmd
    from nnforge.cli.quantize_cmds import compress, quantize, simulate
    from nnforge.cli.sweep_cmd import sweep
    from nnforge.explore.command import explore_cmd  # its heavy imports are inside the command

    for command in (inspect, run, simulate, quantize, compress, sweep, backends, compile_cmd, verify_cmd, synth_cmd,
                    explore_cmd):
        main.add_command(command)


_register()

__all__ = ["main"]
