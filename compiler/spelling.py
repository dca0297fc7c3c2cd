"""How an error names an option: as the command-line flag (``--force``) when the CLI runs, as the
Python keyword (``force=True``) when a Python caller does.

The same checks serve ``nnforge compile -o OUT --force`` and ``nnforge.compile_model(...,
force=True)``; an error from Python that told the caller to pass ``--force`` named an option that
Python does not have.  The CLI switches the spelling for the duration of one command
(``nnforge.cli.main``); everything else gets the Python one.
"""

from __future__ import annotations

from contextvars import ContextVar, Token

# option -> (command line, Python)
SPELLINGS: dict[str, tuple[str, str]] = {
    "force": ("--force", "force=True"),
    "output": ("--output", "the output path"),
    "input_shape": ("--input-shape", "input_shapes= (nnforge.load)"),
    "allow_modified": ("--allow-modified", "allow_modified=True"),
}

_CLI: ContextVar[bool] = ContextVar("nnforge_cli_spelling", default=False)


def option(name: str) -> str:
    """How the running interface spells option ``name`` (a key of ``SPELLINGS``)."""
    cli, python = SPELLINGS[name]
    return cli if _CLI.get() else python


def use_cli() -> Token:
    """Spell options as command-line flags until ``reset(token)``."""
    return _CLI.set(True)


def reset(token: Token) -> None:
    _CLI.reset(token)
