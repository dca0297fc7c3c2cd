"""Console output that survives a pipe.

rich sizes its output to the terminal, and to 80 columns when stdout is a pipe or a file, so a
table redirected to a file was cut (``21,290,6…``) and sentences wrapped mid-phrase.  Here a
console whose file is not a terminal is as wide as its longest line: tables come out complete
(rich sizes a table to its content, never to the console), text is never wrapped, and, as rich
already does for a non-terminal, without colour or other ANSI codes.  A width given explicitly
(``width=``) still wins; ``$COLUMNS`` describes a terminal, so it counts only when the output is one
(pytest-xdist and some shells export ``COLUMNS=80`` to every child).

``plain_tvm_show`` does the same for TVM's ``IRModule.show()``, which otherwise writes
Pygments' terminal colour codes into any stream.
"""

from __future__ import annotations

from rich.console import Console, ConsoleDimensions

#: the width of a non-terminal console: wider than any line nnforge prints
PIPE_WIDTH = 10_000


class PipeConsole(Console):
    """A rich ``Console`` that is ``PIPE_WIDTH`` wide when its file is not a terminal."""

    def __init__(self, *args, width: int | None = None, **kwargs) -> None:
        super().__init__(*args, width=width, **kwargs)
        self._explicit_width = width is not None

    @property
    def size(self) -> ConsoleDimensions:
        if not self._explicit_width and not self.is_terminal:
            return ConsoleDimensions(PIPE_WIDTH, super().size.height)
        return super().size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)


def plain_tvm_show() -> None:
    """Make TVM's ``show()`` print plain TVMScript when stdout is not a terminal (idempotent); a
    terminal or a notebook keeps TVM's colours (``compiler.frontend.relax_utils.plain_show``)."""
    from nnforge.compiler.frontend.relax_utils import plain_show  # here: the console alone needs no TVM

    plain_show()
