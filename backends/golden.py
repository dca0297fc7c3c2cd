"""Golden vectors: input codes and the numpy reference's output codes, and their text format.

Every project gets them (``compile_model`` step 4): up to 32 samples of the given data, or
deterministic random codes without data, written to ``tb/inputs.dat`` and ``tb/golden.dat``
as one line per sample, the flattened codes of every input (or output) array in graph order,
space-separated.  A testbench compares against them; ``nnforge verify`` without data runs them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from nnforge.compiler.errors import InputError
from nnforge.compiler.qgraph import QGraph

GOLDEN_SAMPLES = 32
# The numpy reference runs every golden sample at compile time: at most this many MACs in all
# (a ResNet-50 sample is 4.1e9 MACs, about 2 s), so a large model gets fewer samples (at least one)
GOLDEN_MACS = 10**10
INPUTS_FILE = "tb/inputs.dat"
OUTPUTS_FILE = "tb/golden.dat"


@dataclass
class Golden:
    """Input codes and the reference's output codes for the testbench."""

    inputs: list[np.ndarray]  # one array per graph input, [n, *sample_shape], int64
    outputs: list[np.ndarray]  # one array per graph output
    source: str

    @property
    def samples(self) -> int:
        return int(self.inputs[0].shape[0])


def sample_shape(graph: QGraph, name: str) -> tuple[int, ...]:
    """The per-sample shape of tensor ``name`` (its shape without the batch dimension)."""
    shape = graph.tensors[name].shape
    rest = shape[1:]
    if not all(isinstance(d, int) for d in rest):
        raise InputError(f"tensor {name!r} must have a fixed shape apart from the batch dimension, not {list(shape)}")
    return tuple(int(d) for d in rest)


def golden_vectors(qmodel, golden_inputs: list[np.ndarray] | None, samples: int = GOLDEN_SAMPLES) -> Golden:
    """Up to ``samples`` inputs (float, quantized here) and the numpy reference's outputs; fewer
    for a large model, so that the reference runs at most ``GOLDEN_MACS`` multiply-accumulates.

    Without inputs, deterministic random codes over each input type's range stand in.
    """
    from nnforge.compiler import reference

    from .macs import layer_macs

    graph = qmodel.graph
    macs = sum(layer_macs(graph, node) for node in graph.nodes)
    samples = max(1, min(samples, GOLDEN_MACS // max(macs, 1)))
    if golden_inputs is not None:
        n = min(samples, len(golden_inputs[0]))
        fixed = qmodel.float_model.inputs[0].shape[0]
        if isinstance(fixed, int) and n % fixed:  # a fixed batch dimension takes whole batches only
            n = fixed if len(golden_inputs[0]) >= fixed else n
        codes = qmodel.quantize_inputs([np.asarray(a)[:n] for a in golden_inputs])
        source = f"the first {n} samples of the given data"
    else:
        rng = np.random.default_rng(0)
        fixed = qmodel.float_model.inputs[0].shape[0]
        n = fixed if isinstance(fixed, int) else samples
        codes = [rng.integers(t.qtype.lo, t.qtype.hi + 1, size=(n,) + sample_shape(graph, t.name))
                 for t in graph.inputs]
        source = f"{n} random input codes (seed 0; no data given)"
    codes = [np.asarray(c, dtype=np.int64) for c in codes]
    ref = reference.run(graph, codes)
    return Golden(codes, [ref[o].astype(np.int64) for o in graph.outputs], source)


def write_codes(arrays: list[np.ndarray]) -> str:
    """One line per sample: the flattened codes of every array, space-separated."""
    n = arrays[0].shape[0]
    flat = np.concatenate([a.reshape(n, -1) for a in arrays], axis=1).astype(np.int64)
    buf = io.StringIO()
    np.savetxt(buf, flat, fmt="%d", delimiter=" ")
    return buf.getvalue()


def read_codes(text: str, width: int) -> np.ndarray:
    """The ``[n, width]`` codes of a ``write_codes`` text."""
    flat = np.loadtxt(io.StringIO(text), dtype=np.int64, ndmin=2)
    if flat.size == 0:
        return np.zeros((0, width), np.int64)
    if flat.shape[1] != width:
        raise InputError(f"golden vector lines must hold {width} codes each, not {flat.shape[1]}")
    return flat


def split_codes(flat: np.ndarray, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """``read_codes``' columns back into one ``[n, *shape]`` array per shape (inverse of ``write_codes``)."""
    out, off = [], 0
    for shape in shapes:
        size = int(np.prod(shape, dtype=np.int64))
        out.append(flat[:, off:off + size].reshape((len(flat),) + tuple(shape)))
        off += size
    return out


def golden_files(golden: Golden) -> dict[str, str]:
    """``tb/inputs.dat`` and ``tb/golden.dat`` for ``golden``."""
    return {INPUTS_FILE: write_codes(golden.inputs), OUTPUTS_FILE: write_codes(golden.outputs)}


__all__ = ["GOLDEN_SAMPLES", "Golden", "INPUTS_FILE", "OUTPUTS_FILE", "golden_files", "golden_vectors",
           "read_codes", "sample_shape", "split_codes", "write_codes"]
