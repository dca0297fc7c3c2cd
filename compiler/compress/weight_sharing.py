"""Weight sharing: a small codebook of shared values per layer, and its data-aware refinement.

``kmeans_codebook`` clusters one layer's (nonzero) weights with scikit-learn's ``KMeans``,
initialised linearly over [min, max] as Deep Compression recommends (rare large weights
keep centroids of their own); large layers are clustered through a fine weighted histogram.  ``lsq_centroids`` then re-chooses the centroid values, with
every weight's cluster fixed, to fit the layer's float outputs on calibration data: the
output is linear in the centroids, ``y = sum_c v_c * (x @ B_c)`` where ``B_c`` is the scaled
0/1 mask of cluster ``c``, so this is an ordinary least-squares problem.  ``layer_output``
and ``im2col`` compute the float outputs those fits compare.
"""

from __future__ import annotations

import numpy as np

MAX_ROWS = 4096  # calibration rows (samples, or output pixels for conv) used by the fit


def linear_init(values: np.ndarray, n_clusters: int) -> np.ndarray:
    """``n_clusters`` centroids evenly spaced over [min, max] of ``values``."""
    lo, hi = float(np.min(values)), float(np.max(values))
    return np.linspace(lo, hi, n_clusters) if n_clusters > 1 else np.array([(lo + hi) / 2])


MAX_POINTS = 1 << 16  # above this many weights, k-means runs on a fine weighted histogram


def _points(x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The points k-means sees, with weights.  Large layers are reduced to the means of
    ``MAX_POINTS`` equal-width bins over [min, max], weighted by their counts: the same
    objective up to the within-bin spread (range / 65536, far below one code step), and
    k-means then costs the same on a 2M-weight ResNet layer as on a small one."""
    if x.size <= MAX_POINTS:
        return x, None
    lo, hi = float(x.min()), float(x.max())
    idx = np.minimum(((x - lo) * (MAX_POINTS / max(hi - lo, 1e-300))).astype(np.int64), MAX_POINTS - 1)
    counts = np.bincount(idx, minlength=MAX_POINTS)
    sums = np.bincount(idx, weights=x, minlength=MAX_POINTS)
    keep = counts > 0
    return sums[keep] / counts[keep], counts[keep].astype(np.float64)


def kmeans_codebook(values: np.ndarray, n_clusters: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """1-D k-means with linear initialisation: (sorted centroids, label of each value).

    Each value gets its nearest centroid (in 1-D: the interval between midpoints).  Needs
    more distinct values than ``n_clusters``; the caller falls back otherwise."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    x = np.asarray(values, np.float64).ravel()
    points, weight = _points(x)
    # one thread: on 1-D data OpenMP workers cost more than they save (measured 5-18x slower
    # on 2 busy cores), and nnforge's own TVM workers may be running
    with threadpool_limits(limits=1):
        km = KMeans(n_clusters=n_clusters, init=linear_init(x, n_clusters).reshape(-1, 1), n_init=1,
                    random_state=seed).fit(points.reshape(-1, 1), sample_weight=weight)
    centroids = np.sort(km.cluster_centers_.ravel(), kind="stable")
    labels = np.searchsorted((centroids[1:] + centroids[:-1]) / 2, x)
    return centroids, labels


def im2col(x: np.ndarray, kernel: tuple[int, int], strides, padding, dilation) -> np.ndarray:
    """[N, C, H, W] -> [N * OH * OW, C * kh * kw], columns in the order of ``w.reshape(O, -1)``."""
    kh, kw = kernel
    t, l, b, r = padding
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))
    dh, dw = dilation
    win = np.lib.stride_tricks.sliding_window_view(xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    win = win[:, :, :: strides[0], :: strides[1], ::dh, ::dw]  # [N, C, OH, OW, kh, kw]
    n, c, oh, ow = win.shape[:4]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * kh * kw)


def layer_rows(op: str, attrs: dict, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Input rows of the layer's matrix product: samples (dense) or conv patches, at most
    ``MAX_ROWS`` of them chosen at random."""
    if op == "conv2d":
        kh, kw = attrs["weight"].shape[2:]
        rows = im2col(np.asarray(x, np.float64), (kh, kw), attrs["strides"], attrs["padding"], attrs["dilation"])
    else:
        rows = np.asarray(x, np.float64).reshape(len(x), -1)
    if len(rows) > MAX_ROWS:
        rows = rows[np.sort(rng.choice(len(rows), MAX_ROWS, replace=False))]
    return rows


def as_matrices(op: str, w: np.ndarray, groups: int = 1) -> list[np.ndarray]:
    """The weight as one [K, O_g] matrix per group, so that ``y_g = rows_g @ W_g``."""
    if op == "dense":
        return [np.asarray(w)]
    o = w.shape[0]
    m = np.asarray(w).reshape(o, -1)
    og = o // groups
    return [m[g * og : (g + 1) * og].T for g in range(groups)]


def group_rows(rows: np.ndarray, groups: int) -> list[np.ndarray]:
    k = rows.shape[1] // groups
    return [rows[:, g * k : (g + 1) * k] for g in range(groups)]


def layer_output(op: str, rows: np.ndarray, w: np.ndarray, groups: int = 1) -> np.ndarray:
    """Pre-bias output [R, O] of the layer for input ``rows`` (from ``layer_rows``)."""
    return np.concatenate([r @ m for r, m in zip(group_rows(rows, groups), as_matrices(op, w, groups))], axis=1)


def lsq_centroids(op: str, rows: np.ndarray, target: np.ndarray, labels: np.ndarray, scales: np.ndarray,
                  start: np.ndarray, groups: int = 1) -> np.ndarray:
    """Centroids (code units) minimising ``|| rows @ W(v) + b - target ||^2`` (any ``b``) with
    ``W(v)[k, o] = v[labels[k, o]] * scales[o]`` (label -1: a weight fixed at zero).

    ``labels`` has the weight's shape; ``scales`` one entry per output channel.  A small
    ridge toward ``start`` (the k-means centroids) keeps clusters that calibration data
    never excites where k-means put them."""
    n = len(start)
    ata = np.zeros((n, n))
    atb = np.zeros(n)
    lab_groups = as_matrices(op, labels, groups)
    og = lab_groups[0].shape[1]
    for g, (x, lab) in enumerate(zip(group_rows(rows, groups), lab_groups)):
        y = target[:, g * og : (g + 1) * og]
        s = scales[g * og : (g + 1) * og]
        step = max(1, int(2e7 // max(1, x.shape[0] * n)))  # outputs per chunk: bounded memory
        for o0 in range(0, og, step):
            lab_c = lab[:, o0 : o0 + step]
            onehot = (lab_c[:, :, None] == np.arange(n)).astype(np.float64)  # [K, oc, n]
            a = (x @ onehot.reshape(x.shape[1], -1)).reshape(len(x), lab_c.shape[1], n) * s[o0 : o0 + step, None]
            a -= a.mean(axis=0)  # centred: each output's bias is fitted too (bias correction, after)
            yc = y[:, o0 : o0 + step] - y[:, o0 : o0 + step].mean(axis=0)
            ata += np.einsum("roc,rod->cd", a, a)
            atb += np.einsum("roc,ro->c", a, yc)
    ridge = 1e-6 * max(float(np.trace(ata)) / n, 1e-30)
    return np.linalg.solve(ata + ridge * np.eye(n), atb + ridge * start)


MAX_KEPT = 2048  # the most kept weights per output that ``lsq_kept_weights`` refits


def lsq_kept_weights(op: str, rows: np.ndarray, target: np.ndarray, w: np.ndarray, groups: int = 1) -> np.ndarray:
    """Pruned weights refitted: each output's nonzero weights (zeros stay zero) chosen by
    least squares, ``|| rows @ w + b - target ||^2`` for any bias ``b``, with a small ridge
    toward their current values.  Outputs with more than ``MAX_KEPT`` weights keep theirs."""
    out = [m.copy() for m in as_matrices(op, w, groups)]
    og = out[0].shape[1]
    for g, (x, m) in enumerate(zip(group_rows(rows, groups), out)):
        xc = x - x.mean(axis=0)
        y = target[:, g * og : (g + 1) * og]
        gram = xc.T @ xc
        rhs = xc.T @ (y - y.mean(axis=0))
        ridge = 1e-4 * max(float(np.trace(gram)) / len(gram), 1e-30)
        for o in range(og):
            k = np.flatnonzero(m[:, o])
            if 0 < k.size <= MAX_KEPT:
                m[k, o] = np.linalg.solve(gram[np.ix_(k, k)] + ridge * np.eye(k.size), rhs[k, o] + ridge * m[k, o])
    if op == "dense":
        return out[0]
    return np.concatenate([m.T for m in out]).reshape(w.shape)
