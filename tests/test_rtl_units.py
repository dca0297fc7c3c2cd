"""The systolic accelerator's RTL units (requant, PE, array) against numpy, under Verilator.

Each unit is driven cycle by cycle by hw_sim/systolic/tb_ports.py (Driver and Monitor); the
Model is ``nnforge.compiler.quant.numerics`` (``requantize``, ``round_shift``, ``saturate``) or a numpy
matrix product, and this file is the Checker.  Hypothesis draws the cases; the parameter sets are
few and fixed (each is a Verilator build, ~20 s cold, cached after).  Also here: the committed
``nnf_isa.vh`` is ``isa.verilog_header()``, ``verilator --lint-only -Wall`` passes on the library
for several parameter sets, and Icarus compiles it where installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from nnforge.backends.systolic import isa
from nnforge.compiler.errors import NNForgeError
from nnforge.compiler.quant.numerics import QType, requantize, round_shift, saturate
from nnforge.hw_sim import rtl

from rtl_program import shared_rtl_cache  # noqa: F401  (one build cache for all xdist workers)

TB_DIR = Path(rtl.__file__).parent / "systolic"
needs_verilator = pytest.mark.skipif(rtl.simulator_missing() is not None,
                                     reason=f"RTL simulation unavailable: {rtl.simulator_missing()}")
# no shrinking: every example is a simulation, and the first failure already names its case
SIM_SETTINGS = settings(max_examples=3, derandomize=True, deadline=None,
                        phases=[Phase.explicit, Phase.reuse, Phase.generate],
                        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                               HealthCheck.data_too_large])


def port_sim(toplevel: str, params: dict[str, int], work: Path, inputs: dict[str, tuple[np.ndarray, int]],
             outputs: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    """Drive ``inputs`` (port -> ([T, lanes] values, lane width)) on a build of ``toplevel`` and
    return ``outputs`` (port -> (lane width, lanes)) as [T, lanes]: row t is cycle t."""
    work.mkdir(parents=True, exist_ok=True)
    cycles = {len(a) for a, _ in inputs.values()}
    assert len(cycles) == 1, "every input table needs one row a cycle"
    cfg = {"cycles": cycles.pop(), "results": "results.npz", "inputs": {}, "outputs": {}}
    for name, (table, width) in inputs.items():
        np.save(work / f"{name}.npy", np.asarray(table, dtype=np.int64))
        cfg["inputs"][name] = {"file": f"{name}.npy", "width": width}
    for name, (width, lanes) in outputs.items():
        cfg["outputs"][name] = {"width": width, "lanes": lanes}
    (work / "config.json").write_text(json.dumps(cfg))
    build = rtl.build(params, toplevel=toplevel)
    rtl.run(build, "tb_ports", work, {"NNF_TB_CONFIG": str(work / "config.json")}, [TB_DIR])
    with np.load(work / "results.npz") as r:
        return {k: r[k] for k in r.files}


def unsigned(values, bits: int) -> np.ndarray:
    return np.asarray(values, dtype=np.int64) & ((1 << bits) - 1)


def signed(values, bits: int) -> np.ndarray:
    v = unsigned(values, bits)
    return np.where(v >= (1 << (bits - 1)), v - (1 << bits), v)


# -- the runner's API ------------------------------------------------------------------------------

def test_build_rejects_bad_parameters():
    with pytest.raises(rtl.RTLSimError, match="parameter must be one of ROWS, COLS.*not 'ROWZ'"):
        rtl.build({"ROWZ": 2})
    with pytest.raises(rtl.RTLSimError, match="RTL parameter ROWS must be an integer, not 2.5"):
        rtl.build({"ROWS": 2.5})
    assert issubclass(rtl.RTLSimError, NNForgeError)  # the CLI exits 2 with its message


def test_simulator_missing_names_the_choices():
    assert "must be one of ('verilator', 'icarus'), not 'vcs'" in rtl.simulator_missing("vcs")


def test_run_needs_a_build_folder(tmp_path):
    with pytest.raises(rtl.RTLSimError, match="must be a folder made by nnforge.hw_sim.rtl.build"):
        rtl.run(tmp_path, "tb_program", tmp_path, {}, [])


@needs_verilator
def test_build_key_covers_parameters_sources_and_top(tmp_path):
    srcs = rtl.library_sources()
    key = rtl.build_key({"ROWS": 2}, srcs, rtl.TOP, "verilator")
    assert key == rtl.build_key({"ROWS": 2}, srcs, rtl.TOP, "verilator")
    assert key != rtl.build_key({"ROWS": 3}, srcs, rtl.TOP, "verilator")
    assert key != rtl.build_key({"ROWS": 2}, srcs, "nnf_pe", "verilator")
    edited = tmp_path / srcs[-1].name
    edited.write_text(srcs[-1].read_text() + "// edited\n")
    assert key != rtl.build_key({"ROWS": 2}, [*srcs[:-1], edited], rtl.TOP, "verilator")


def _build_pe(cache: str) -> str:
    import os

    os.environ["XDG_CACHE_HOME"] = cache
    return str(rtl.build({"IN_W": 3, "ACC_W": 10}, toplevel="nnf_pe"))


@pytest.mark.slow
@needs_verilator
def test_concurrent_builds_share_one_cache_entry(tmp_path):
    """Two processes building one key (pytest -n 2): one compiles, the other waits on the lock."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2) as pool:
        a, b = pool.map(_build_pe, [str(tmp_path)] * 2)
    assert a == b and (Path(a) / "nnforge-build.json").is_file()
    assert [p.name for p in (tmp_path / "nnforge" / "rtl").iterdir() if p.is_dir()] == [Path(a).name]


# -- generated header, lint, Icarus ---------------------------------------------------------------

def test_isa_header_is_current():
    assert (rtl.hdl_dir() / "nnf_isa.vh").read_text() == isa.verilog_header()


LINT_SETS = [{}, {"ROWS": 2, "COLS": 3, "IN_W": 4, "ACC_W": 16}, {"ROWS": 1, "COLS": 1},
             {"ROWS": 4, "COLS": 16, "IN_W": 16, "ACC_W": 40, "IDX_W": 2}]


@needs_verilator
@pytest.mark.parametrize("params", LINT_SETS, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()) or "default")
def test_verilator_lint_wall(params):
    """``verilator --lint-only -Wall`` is clean; the one waiver is nnf_lint.vlt (partly used bits)."""
    vbin = rtl._verilator_bin()
    srcs = [str(p) for p in rtl.library_sources()]
    cmd = [str(vbin / "verilator"), "--lint-only", "-Wall", f"-I{rtl.hdl_dir()}", "--top-module", rtl.TOP,
           *[f"-G{k}={v}" for k, v in params.items()], *srcs]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0 and "%Warning" not in proc.stderr, proc.stderr[-3000:]


@needs_verilator
@pytest.mark.parametrize("top", ["nnf_pe", "nnf_array", "nnf_requant"])
def test_verilator_lint_units(top):
    vbin = rtl._verilator_bin()
    cmd = [str(vbin / "verilator"), "--lint-only", "-Wall", f"-I{rtl.hdl_dir()}", "--top-module", top,
           *[str(p) for p in rtl.library_sources()]]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0 and "%Warning" not in proc.stderr, proc.stderr[-3000:]


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog (iverilog) is not installed")
def test_icarus_compiles(tmp_path):
    srcs = [str(p) for p in rtl.library_sources() if p.suffix == ".v"]
    for params in ([], ["-Pnnf_systolic_top.ROWS=2", "-Pnnf_systolic_top.COLS=3", "-Pnnf_systolic_top.IN_W=4"]):
        proc = subprocess.run(["iverilog", "-g2005", f"-I{rtl.hdl_dir()}", "-s", rtl.TOP, *params,
                               "-o", str(tmp_path / "top.vvp"), *srcs], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]


# -- requant ----------------------------------------------------------------------------------------

RQ_LAT = 7            # nnf_requant: y/out_valid 7 cycles after the input, prod 3 cycles after
RQ_SETS = [{"IN_W": 8, "ACC_W": 32}, {"IN_W": 16, "ACC_W": 40}, {"IN_W": 5, "ACC_W": 20}]


@st.composite
def requant_group(draw, in_w: int, acc_w: int):
    """One instruction's static controls and a list of (acc, M, n) for them."""
    out_bits = draw(st.integers(2, in_w))
    out_signed = draw(st.booleans())
    t = QType(out_bits, out_signed)
    lo = draw(st.sampled_from([t.lo, 0, max(t.lo, -3)])) if out_signed else draw(st.sampled_from([0, 1]))
    hi = draw(st.sampled_from([t.hi, t.hi // 2 + 1, 6 if t.hi >= 6 else t.hi]))
    static = {"rnd": draw(st.booleans()), "wrap": draw(st.booleans()), "out_signed": out_signed,
              "out_bits": out_bits, "lo": min(lo, hi), "hi": hi}
    a_lo, a_hi = -(1 << (acc_w - 1)), (1 << (acc_w - 1)) - 1
    shift = st.one_of(st.integers(0, 31), st.integers(32, 63))
    vals = draw(st.lists(st.tuples(st.integers(a_lo, a_hi), st.integers(0, (1 << 16) - 1), shift),
                         min_size=20, max_size=60))
    # ties (v = q*2^n + 2^(n-1), positive and negative), small accumulators, saturation edges
    for n in (1, 2, 5, 13, 31):
        for q in (-3, -1, 0, 2, 7):
            v = q * (1 << n) + (1 << (n - 1))
            if a_lo <= v <= a_hi:
                vals.append((v, 1, n))
    for v in (-1, 0, 1, a_lo, a_hi, t.lo - 1, t.lo, t.hi, t.hi + 1, (1 << out_bits) + 3, -(1 << out_bits) - 3):
        if a_lo <= v <= a_hi:
            vals += [(v, 1, 0), (v, (1 << 15) - 1, 15), (v, 1 << 14, 14)]
    k = 64  # the extreme accumulator of a K=64 dot product of the most negative codes
    b = min(in_w, (acc_w - 8) // 2)
    ext = k * (1 << (2 * b - 2))
    if ext <= a_hi:
        vals += [(ext, 1, 2 * b - 2), (ext, 21845, 20), (-ext, 1, 3)]
    return static, vals


def _requant_expected(static, acc, m, n) -> np.ndarray:
    t = QType(static["out_bits"], static["out_signed"])
    return requantize(np.array([acc]), m, n, t, "RND" if static["rnd"] else "TRN",
                      "WRAP" if static["wrap"] else "SAT", static["lo"], static["hi"])[0]


@pytest.mark.slow
@needs_verilator
@pytest.mark.parametrize("params", RQ_SETS, ids=lambda p: f"in{p['IN_W']}_acc{p['ACC_W']}")
@SIM_SETTINGS
@given(data=st.data())
def test_requant_matches_numerics(params, data, tmp_path_factory):
    in_w, acc_w = params["IN_W"], params["ACC_W"]
    groups = data.draw(st.lists(requant_group(in_w, acc_w), min_size=2, max_size=4), label="groups")
    # ADD pairs: round_shift(a*m_a, n_a) + round_shift(b*m_b, n_b), then saturate
    pair_static = {"rnd": True, "wrap": False, "out_signed": True, "out_bits": in_w,
                   "lo": QType(in_w, True).lo, "hi": QType(in_w, True).hi}
    code = st.integers(-(1 << (in_w - 1)), (1 << (in_w - 1)) - 1)
    pairs = data.draw(st.lists(st.tuples(code, st.integers(0, 1 << 15), st.integers(0, 20),
                                         code, st.integers(0, 1 << 15), st.integers(0, 20)),
                               min_size=10, max_size=30), label="pairs")
    # MUL's first pass: prod = acc * signed mult, 3 cycles later
    muls = data.draw(st.lists(st.tuples(code, st.integers(-(1 << 16), (1 << 16) - 1)), min_size=5, max_size=20),
                     label="muls")

    cols = ["in_valid", "acc", "mult", "shift", "pair", "rnd", "wrap", "out_signed", "out_bits", "lo", "hi"]
    rows: list[list[int]] = []
    expect_y: dict[int, int] = {}
    expect_prod: dict[int, int] = {}

    def emit(static, valid, acc, mult, shift, pair):
        rows.append([valid, acc, mult, shift, pair, int(static["rnd"]), int(static["wrap"]),
                     int(static["out_signed"]), static["out_bits"], static["lo"], static["hi"]])

    def idle(static, n=RQ_LAT + 1):
        for _ in range(n):
            emit(static, 0, 0, 0, 0, 0)

    for static, vals in groups:
        for acc, m, n in vals:
            expect_y[len(rows)] = int(_requant_expected(static, acc, m, n))
            emit(static, 1, acc, m, n, 0)
        idle(static)
    for a, ma, na, b, mb, nb in pairs:
        emit(pair_static, 0, a, ma, na, 0)
        t = QType(in_w, True)
        s = round_shift(a * ma, na, "RND") + round_shift(b * mb, nb, "RND")
        expect_y[len(rows)] = int(saturate(np.array([s]), t, "SAT", t.lo, t.hi)[0])
        emit(pair_static, 1, b, mb, nb, 1)
    idle(pair_static)
    for a, mult in muls:
        expect_prod[len(rows)] = (a * mult) & ((1 << acc_w) - 1)
        emit(pair_static, 0, a, mult, 0, 0)
    idle(pair_static)

    table = np.array(rows, dtype=np.int64)
    widths = {"in_valid": 1, "acc": acc_w, "mult": 17, "shift": 6, "pair": 1, "rnd": 1, "wrap": 1,
              "out_signed": 1, "out_bits": 5, "lo": 32, "hi": 32}
    inputs = {c: (table[:, i:i + 1], widths[c]) for i, c in enumerate(cols)}
    out = port_sim("nnf_requant", params, tmp_path_factory.mktemp("rq"), inputs,
                   {"y": (in_w, 1), "out_valid": (1, 1), "prod": (acc_w, 1)})
    y, valid, prod = out["y"][:, 0], out["out_valid"][:, 0], out["prod"][:, 0]
    got_valid = {t - RQ_LAT for t in np.flatnonzero(valid)}
    want_valid = {t for t in range(len(rows)) if rows[t][0]}
    assert got_valid == want_valid, (sorted(got_valid - want_valid)[:10], sorted(want_valid - got_valid)[:10])
    for t, want in expect_y.items():
        assert y[t + RQ_LAT] == unsigned(want, in_w), (t, rows[t], want)
    for t, want in expect_prod.items():
        assert prod[t + 3] == want, (t, rows[t], want)


# -- PE ----------------------------------------------------------------------------------------------

PE_SETS = [{"IN_W": 8, "ACC_W": 32}, {"IN_W": 3, "ACC_W": 12}]


@pytest.mark.slow
@needs_verilator
@pytest.mark.parametrize("params", PE_SETS, ids=lambda p: f"in{p['IN_W']}_acc{p['ACC_W']}")
@SIM_SETTINGS
@given(data=st.data())
def test_pe_accumulates_tiles(params, data, tmp_path_factory):
    """Back-to-back tiles of random length: res = bias + sum ext(a)*ext(w) (ACC_W wrap), three
    cycles after the next tile's first (operand and product registers around the multiply);
    operands pass through one cycle later; the sign flags are sampled one cycle ahead."""
    in_w, acc_w = params["IN_W"], params["ACC_W"]
    n_tiles = data.draw(st.integers(3, 8), label="tiles")
    rows = [[0, 0, 0, 0, 0, 0]]  # a_signed, w_signed, a, w, first, bias (one idle cycle first)
    tiles = []
    for s in range(n_tiles + 1):
        last = s == n_tiles
        k = 1 if last else data.draw(st.integers(1, 12), label="k")
        sa, sw = (True, True) if last else (data.draw(st.booleans()), data.draw(st.booleans()))
        lo_a = -(1 << (in_w - 1)) if sa else 0
        lo_w = -(1 << (in_w - 1)) if sw else 0
        extreme = s == 1  # the most negative codes every k-step
        a = [lo_a if extreme else data.draw(st.integers(lo_a, lo_a + (1 << in_w) - 1)) for _ in range(k)]
        w = [lo_w if extreme else data.draw(st.integers(lo_w, lo_w + (1 << in_w) - 1)) for _ in range(k)]
        bias = data.draw(st.integers(-(1 << (acc_w - 1)), (1 << (acc_w - 1)) - 1))
        tiles.append((len(rows), sa, sw, a, w, bias))
        for i in range(k):
            rows.append([int(sa), int(sw), a[i], w[i], int(i == 0), bias])
    rows += [[0, 0, 0, 0, 0, 0]] * 4
    table = np.array(rows, dtype=np.int64)
    table[2:, 5] = table[:-2, 5].copy()  # the PE samples bias two cycles after first_in
    table[:-1, 0:2] = table[1:, 0:2].copy()  # ... and the sign flags one cycle before the operands
    widths = [1, 1, in_w, in_w, 1, acc_w]
    names = ["a_signed", "w_signed", "a_in", "w_in", "first_in", "bias"]
    out = port_sim("nnf_pe", params, tmp_path_factory.mktemp("pe"),
                   {n: (table[:, i:i + 1], widths[i]) for i, n in enumerate(names)},
                   {"res": (acc_w, 1), "a_out": (in_w, 1), "w_out": (in_w, 1), "first_out": (1, 1)})
    # pass-through: one register
    assert np.array_equal(out["a_out"][1:, 0], unsigned(table[:-1, 2], in_w))
    assert np.array_equal(out["w_out"][1:, 0], unsigned(table[:-1, 3], in_w))
    assert np.array_equal(out["first_out"][1:, 0], table[:-1, 4])
    res = out["res"][:, 0]
    finish = set()
    for (start, sa, sw, a, w, bias), (nxt, *_rest) in zip(tiles[:-1], tiles[1:]):
        want = bias + int(np.dot(np.array(a, dtype=np.int64), np.array(w, dtype=np.int64)))
        assert res[nxt + 3] == unsigned(want, acc_w), (start, a, w, bias)
        finish.add(nxt + 3)
    others = [t for t in range(len(rows)) if t not in finish and t >= 4]
    assert not res[others].any()  # res is 0 except when a tile finishes


# -- array -------------------------------------------------------------------------------------------

ARRAY_SETS = [{"ROWS": 3, "COLS": 4, "IN_W": 8, "ACC_W": 32}, {"ROWS": 2, "COLS": 2, "IN_W": 4, "ACC_W": 16}]


@pytest.mark.slow
@needs_verilator
@pytest.mark.parametrize("params", ARRAY_SETS, ids=lambda p: f"r{p['ROWS']}c{p['COLS']}_in{p['IN_W']}")
@SIM_SETTINGS
@given(data=st.data())
def test_array_matmul(params, data, tmp_path_factory):
    """Back-to-back tiles (K >= COLS k-steps each, random signedness): column j's row i of tile s
    is bias + A_s[i] . B_s[:, j] at t_{s+1} + i + j + 3, and 0 in every other cycle."""
    R, C, in_w, acc_w = params["ROWS"], params["COLS"], params["IN_W"], params["ACC_W"]
    n_tiles = data.draw(st.integers(2, 5), label="tiles")
    sa, sw = data.draw(st.booleans(), label="a_signed"), data.draw(st.booleans(), label="w_signed")
    lo_a = -(1 << (in_w - 1)) if sa else 0
    lo_w = -(1 << (in_w - 1)) if sw else 0
    tiles, starts = [], []
    t = 1  # one idle cycle first: the PEs register the sign flags
    for s in range(n_tiles):
        k = data.draw(st.integers(C, 3 * C), label="k")
        seed = data.draw(st.integers(0, 2 ** 32 - 1), label="seed")
        rng = np.random.default_rng(seed)
        a = rng.integers(lo_a, lo_a + (1 << in_w), size=(R, k))
        w = rng.integers(lo_w, lo_w + (1 << in_w), size=(k, C))
        if s == 0:  # the extreme accumulator: K * (-2^(b-1))^2
            a[:] = lo_a
            w[:] = lo_w
        bias = rng.integers(-(1 << (acc_w - 2)), 1 << (acc_w - 2), size=C)
        tiles.append((a, w, bias))
        starts.append(t)
        t += k
    starts.append(t)  # the flush wavefront
    total = t + 1 + R + C + 5
    a_rows = np.zeros((total, R), np.int64)
    w_word = np.zeros((total, C), np.int64)
    first = np.zeros((total, 1), np.int64)
    bias_word = np.zeros((total, C), np.int64)
    for (a, w, bias), t0 in zip(tiles, starts):
        k = w.shape[0]
        w_word[t0:t0 + k] = w
        first[t0] = 1
        bias_word[t0 + 1:t0 + 1 + C] = bias  # held COLS cycles from one cycle after first
        for i in range(R):
            a_rows[t0 + i:t0 + i + k, i] = a[i]
    first[starts[-1]] = 1
    flags = np.zeros((total, 1), np.int64)
    out = port_sim("nnf_array", params, tmp_path_factory.mktemp("arr"),
                   {"a_signed": (flags + int(sa), 1), "w_signed": (flags + int(sw), 1), "a_rows": (a_rows, in_w),
                    "w_word": (w_word, in_w), "first": (first, 1), "bias_word": (bias_word, acc_w)},
                   {"col_res": (acc_w, C), "col_first": (1, C)})
    res = out["col_res"]
    seen = np.zeros_like(res, dtype=bool)
    for (a, w, bias), t_next in zip(tiles, starts[1:]):
        want = a.astype(np.int64) @ w.astype(np.int64) + bias[None, :]
        for i in range(R):
            for j in range(C):
                row = t_next + i + j + 3
                assert res[row, j] == unsigned(want[i, j], acc_w), (i, j, want[i, j])
                seen[row, j] = True
    first_tile_rows = [starts[0] + i + j + 3 for i in range(R) for j in range(C)]
    seen[first_tile_rows, :] = True  # the (garbage) tile before the first
    assert not res[~seen].any()
    for j in range(C):  # col_first: `first` at column j's top, two cycles later
        assert np.array_equal(np.flatnonzero(out["col_first"][:, j]), np.array(starts) + j + 2)
