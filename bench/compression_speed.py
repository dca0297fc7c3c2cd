"""Speed of the Deep Compression stages on ResNet-50-sized weights.

    python bench/compression_speed.py

Sections (each prints its own table):

* ``bench_sharing``: weight sharing (k-means with linear initialisation, scikit-learn) of
  every conv/fc layer's weights at ResNet-50 shapes, side by side with a sorted-data 1-D Lloyd.

* ``bench_huffman``: the sparse relative-index layout and canonical Huffman coding
  (compiler/compress/huffman.py, bitarray) of every conv/fc layer of the onnx wheel's
  ``light_resnet50.onnx``.  That model's weights are constant-filled (every code equal, a
  one-symbol stream), so besides those it codes a synthetic weight set with the same layer
  shapes: Laplacian weights, quantized per output channel to 8 bits (dense), and the same
  shared over 16 uniform levels and pruned at random to 80% zeros (sharing rounds small codes
  to 0 as well, so fewer than 20% stay nonzero; sparse layout, 4-bit indices, 8-bit conv /
  5-bit fc gaps).  Decoding is checked for exact equality.

Measurement only; the tests assert correctness, never timings.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def resnet50_weight_shapes() -> list[tuple[str, str, tuple[int, ...]]]:
    """(name, op, shape) of every Conv/Gemm weight of light_resnet50.onnx (ConstantOfShape-filled)."""
    m = onnx.load(str(LIGHT / "light_resnet50.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    shape_of = {n.output[0]: tuple(int(d) for d in inits[n.input[0]]) for n in m.graph.node
                if n.op_type == "ConstantOfShape" and n.input[0] in inits}
    value_of = {n.output[0]: n for n in m.graph.node if n.op_type == "ConstantOfShape"}
    out = []
    for n in m.graph.node:
        if n.op_type in ("Conv", "Gemm"):
            w = n.input[1]
            shape = shape_of[w] if w in shape_of else tuple(inits[w].shape)
            out.append((w, "conv2d" if n.op_type == "Conv" else "dense", shape))
    assert value_of  # the weights really are constant-filled: see the module docstring
    return out


def _weight_sets(shapes, rng):
    """Three code sets with the model's layer shapes: constant, Laplacian w8, pruned 80% + shared K=16."""
    const, lap, pruned = [], [], []
    for name, op, shape in shapes:
        const.append((name, op, np.ones(shape, np.int64), None, 8))
        w = rng.laplace(0.0, 1.0, shape)
        axis = tuple(range(1, len(shape))) if op == "conv2d" else (0,)
        amax = np.abs(w).max(axis=axis, keepdims=True)
        codes = np.clip(np.floor(w / amax * 127 + 0.5), -127, 127).astype(np.int64)
        lap.append((name, op, codes, None, 8))
        levels = np.linspace(-127, 127, 16).round().astype(np.int64)
        levels[np.argmin(np.abs(levels))] = 0  # the codebook holds 0 for pruned weights
        levels = np.unique(levels)
        shared = levels[np.abs(codes[..., None] - levels).argmin(-1)]
        shared[rng.random(shape) < 0.8] = 0
        pruned.append((name, op, shared, levels, 8))
    return {"light weights (constant)": const, "Laplacian w8 dense": lap, "Laplacian 80% pruned, K=16": pruned}


def _sorted_lloyd(values: np.ndarray, init: np.ndarray, iters: int = 300) -> np.ndarray:
    """The peer: exact 1-D Lloyd on sorted data (boundaries by searchsorted, means by prefix sums)."""
    v = np.sort(values)
    prefix = np.concatenate([[0.0], np.cumsum(v)])
    c = init.astype(np.float64)
    for _ in range(iters):
        cut = np.searchsorted(v, (c[1:] + c[:-1]) / 2)
        lo, hi = np.concatenate([[0], cut]), np.concatenate([cut, [len(v)]])
        n = hi - lo
        new = np.where(n > 0, (prefix[hi] - prefix[lo]) / np.maximum(n, 1), c)
        if np.allclose(new, c, rtol=0, atol=1e-9):
            break
        c = new
    return np.sort(c)


def bench_sharing(share_bits: int = 4, sparsity: float = 0.8) -> list[dict]:
    """Weight sharing (compiler/compress/weight_sharing.py: scikit-learn KMeans, linear init) per layer.

    light_resnet50's weights are constant (one distinct value: the pass falls back without
    clustering), so this clusters Laplacian weights of the same layer shapes, pruned to
    ``sparsity`` by magnitude, in the 8-bit code domain as compress.py does; side by side
    with an exact sorted-data 1-D Lloyd from the same linear initialisation."""
    from nnforge.compiler.compress.prune import magnitude_mask
    from nnforge.compiler.compress.weight_sharing import kmeans_codebook, linear_init

    shapes = resnet50_weight_shapes()
    rng = np.random.default_rng(0)
    n_clusters = 2**share_bits - 1  # zero is its own entry
    total = t_sk = t_lloyd = 0.0
    worst = err_sk = err_lloyd = 0.0

    def sse(values, c):  # squared error with each value at its nearest centroid
        return float(((values - c[np.searchsorted((c[1:] + c[:-1]) / 2, values)]) ** 2).sum())
    print(f"Weight sharing, ResNet-50 layer shapes ({len(shapes)} conv/fc layers), Laplacian weights, "
          f"{sparsity:.0%} pruned, 2^{share_bits} codes")
    for name, op, shape in shapes:
        w = rng.laplace(0.0, 1.0, shape)
        w = w * magnitude_mask(w, sparsity)
        axis = 0 if op == "conv2d" else 1
        amax = np.abs(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)).max(axis=1)
        scale = np.where(amax > 0, amax / 127, 1.0).reshape([-1 if i == axis else 1 for i in range(w.ndim)])
        u = (w / scale)[w != 0]
        t0 = time.perf_counter()
        centroids, _ = kmeans_codebook(u, n_clusters)
        t1 = time.perf_counter()
        peer = _sorted_lloyd(u, linear_init(u, n_clusters))
        t2 = time.perf_counter()
        total += u.size
        t_sk, t_lloyd = t_sk + t1 - t0, t_lloyd + t2 - t1
        worst = max(worst, float(np.abs(centroids - peer).max()))
        err_sk, err_lloyd = err_sk + sse(u, centroids), err_lloyd + sse(u, peer)
    print(f"{'clustered weights':>18s} {'sklearn s':>10s} {'sorted Lloyd s':>15s} {'ratio':>7s} "
          f"{'SSE sklearn/Lloyd':>18s} {'max |centroid diff|':>20s}")
    print(f"{int(total):18,d} {t_sk:10.2f} {t_lloyd:15.2f} {t_sk / t_lloyd:7.2f} {err_sk / err_lloyd:18.3f} {worst:20.4f}")
    print("centroids in 8-bit code units.  Plain Lloyd keeps the empty clusters linear init leaves in the\n"
          "sparse Laplacian tails, scikit-learn relocates them: its clustering error (SSE) is the lower one")
    return [dict(weights=int(total), sklearn_s=t_sk, sorted_lloyd_s=t_lloyd, sse_ratio=err_sk / err_lloyd,
                 max_centroid_diff=worst)]


def bench_huffman(layout: str = "auto") -> list[dict]:
    from nnforge.compiler.compress.compression_report import encode_streams, layer_streams
    from nnforge.compiler.compress.huffman import CONV_GAP_BITS, FC_GAP_BITS, dense_codes, huffman_decode
    from nnforge.compiler.qgraph import QNode

    shapes = resnet50_weight_shapes()
    sets = _weight_sets(shapes, np.random.default_rng(0))
    rows = []
    print(f"Huffman coding, ResNet-50 layer shapes ({len(shapes)} conv/fc layers)")
    print(f"{'weights':30s} {'params':>12s} {'entries':>12s} {'layout s':>9s} {'encode s':>9s} {'decode s':>9s} "
          f"{'enc MB/s':>9s} {'dec MB/s':>9s} {'bits/weight':>11s} {'nonzero':>8s}")
    for label, layers in sets.items():
        params = entries = bits = nonzeros = 0
        t_layout = t_enc = t_dec = 0.0
        for name, op, codes, codebook, wbits in layers:
            attrs = dict(weight=codes, weight_bits=wbits, bias=np.zeros(1, np.int64), acc_dtype="int64", multiplier=1,
                         shift=0, lo=None, hi=None, rounding="RND", overflow="SAT")  # a whole node; only weights are read
            if op == "conv2d":
                attrs.update(strides=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1)
            if codebook is not None:
                attrs["codebook"] = codebook
            node = QNode(op, name, [], name, attrs)
            t0 = time.perf_counter()
            s = layer_streams(node, CONV_GAP_BITS if op == "conv2d" else FC_GAP_BITS, layout)
            t1 = time.perf_counter()
            s = encode_streams(s)
            t2 = time.perf_counter()
            idx = huffman_decode(s.index_huffman)
            gaps = huffman_decode(s.gap_huffman) if s.gap_huffman is not None else None
            t3 = time.perf_counter()
            assert np.array_equal(idx, s.indices)
            if gaps is not None:
                assert np.array_equal(gaps, s.layout.gaps) and np.array_equal(dense_codes(s.layout), s.codes)
            params += codes.size
            nonzeros += int(np.count_nonzero(codes))
            entries += len(s.indices)
            bits += s.index_huffman.payload_bits + (s.gap_huffman.payload_bits if s.gap_huffman is not None else 0)
            t_layout, t_enc, t_dec = t_layout + t1 - t0, t_enc + t2 - t1, t_dec + t3 - t2
        mb = params * 4 / 1e6  # float32 megabytes of weights
        row = dict(weights=label, params=params, entries=entries, layout_s=t_layout, encode_s=t_enc, decode_s=t_dec,
                   encode_mb_s=mb / t_enc, decode_mb_s=mb / t_dec, bits_per_weight=bits / params,
                   nonzero=nonzeros / params)
        rows.append(row)
        print(f"{label:30s} {params:12,d} {entries:12,d} {t_layout:9.2f} {t_enc:9.2f} {t_dec:9.2f} "
              f"{row['encode_mb_s']:9.1f} {row['decode_mb_s']:9.1f} {row['bits_per_weight']:11.3f} {row['nonzero']:8.1%}",
              flush=True)
    print("MB/s: float32 megabytes of weights (4 bytes per parameter) per second; bits/weight: Huffman payload only")
    return rows


def main() -> None:
    for name in ("bench_sharing", "bench_huffman"):  # whichever sections this file has
        section = globals().get(name)
        if section is not None:
            section()
            print()


if __name__ == "__main__":
    main()
