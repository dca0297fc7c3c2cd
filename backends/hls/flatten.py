"""The hls sources as one C++ file: the runtime module ``relax.ext.nnforge_hls`` returns.

``flatten(files, top)`` starts from ``src/<top>.cpp`` and replaces every ``#include "..."`` of a
generated file by that file's text, each file once (they are all ``#pragma once``), resolved
relative to the including file as a compiler would; system includes stay.  Weights kept in
binary files (the ``file`` form) stay outside: their arrays are filled at run time.
"""

from __future__ import annotations

import posixpath
import re

from nnforge.compiler.errors import InputError

_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$')
_ONCE = re.compile(r"^\s*#\s*pragma\s+once\s*$")


def flatten(files: dict[str, str | bytes], top: str) -> str:
    """``src/<top>.cpp`` with its generated headers inlined."""
    main = f"src/{top}.cpp"
    if main not in files:
        raise InputError(f"the generated sources must contain {main}, not only {sorted(files)[:5]}")
    seen: set[str] = set()
    out: list[str] = [f"// {top}: the generated C++ in one file (nnforge.backends.hls.flatten)"]

    def emit(path: str) -> None:
        seen.add(path)
        text = files[path]
        text = text.decode() if isinstance(text, bytes) else text
        out.append(f"// ---- {path}")
        for line in text.splitlines():
            m = _INCLUDE.match(line)
            if m:
                ref = posixpath.normpath(posixpath.join(posixpath.dirname(path), m.group(1)))
                if ref in files:
                    if ref not in seen:
                        emit(ref)
                    continue
                if ref.endswith(".inc"):  # `make literals` output: synthesis only
                    out.append(line)
                    continue
                raise InputError(f"{path} includes {m.group(1)!r}, which the generated sources must contain")
            if not _ONCE.match(line):
                out.append(line)

    emit(main)
    return "\n".join(out) + "\n"


__all__ = ["flatten"]
