"""Run a written systolic project: its RTL under cocotb, or its images through the functional model.

Both take input codes, pack them into stream words with the manifest's layouts, run, and unpack
the output words and (with ``trace``) every layer's trace region at its SYNC into tensors by
name.  Layers the host runs after the array (``manifest["host"]``) are then computed with the
numpy reference on the unpacked outputs.  Per-layer ``measured_cycles`` are the differences of
consecutive SYNC stamps; ``utilization = macs / (measured_cycles * rows * cols)``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from nnforge.compiler.errors import InputError

from ..base import Simulation
from . import isa, isa_sim
from .manifest import pack_inputs, unpack_words

TB_MODULE = "tb_program"
HARNESS_SOURCE = "nnf_tb_harness.v"  # its Verilog half


def _manifest(project: Path) -> dict:
    from . import read_manifest

    return read_manifest(project)


def _tensors(m: dict, outputs: np.ndarray, traces: dict[int, np.ndarray] | None) -> dict[str, np.ndarray]:
    bits = m["in_bits"]
    out = {doc["name"]: unpack_words(doc["layout"], outputs, bits) for doc in m["outputs"]}
    for layer in m["layers"] if traces is not None else []:
        words = traces.get(layer["id"])
        if words is not None:
            out[layer["output"]] = unpack_words(layer["layout"], words, bits)
    return out


def _host_tail(project: Path, m: dict, tensors: dict[str, np.ndarray], inputs: list[np.ndarray]) -> None:
    """The trailing layers the host runs (the numpy reference, one op each), in graph order."""
    if not m["host"]:
        return
    from nnforge.compiler import reference
    from nnforge.compiler.qgraph_io import read_graph

    graph = read_graph(project / "model")
    values = dict(tensors)
    values.update({t.name: np.asarray(a, np.int64) for t, a in zip(graph.inputs, inputs)})
    names = {h["name"] for h in m["host"]}
    for node in graph.nodes:
        if node.name in names:
            out_type = graph.tensors[node.output].qtype
            values[node.output] = np.asarray(reference.OPS[node.op](node, [values[i] for i in node.inputs], out_type),
                                             dtype=np.int64)
            tensors[node.output] = values[node.output]


def _layers(m: dict, stamps) -> dict[str, dict]:
    stamps = [int(s) for s in stamps]
    if len(stamps) != m["n_sync"]:
        raise InputError(f"the simulation must stamp {m['n_sync']} SYNCs, not {len(stamps)}")
    out = {}
    for layer in m["layers"]:
        cycles = stamps[layer["id"]] - stamps[layer["id"] - 1]
        util = layer["macs"] / (cycles * m["rows"] * m["cols"]) if cycles > 0 else None
        out[layer["name"]] = {"measured_cycles": cycles, "utilization": util}
    return out


def _result(project: Path, m: dict, inputs, outputs, traces, stamps, notes: list[str]) -> Simulation:
    tensors = _tensors(m, outputs, traces)
    _host_tail(project, m, tensors, inputs)
    return Simulation(tensors, _layers(m, stamps), notes)


def simulate_model(project: Path, inputs: list[np.ndarray], trace: bool = True) -> Simulation:
    """The functional model (``isa_sim``) on the project's own memory images."""
    m = _manifest(project)
    words = pack_inputs(m, inputs)
    mem = {name: isa_sim.read_words((project / doc["file"]).read_text())[:doc["used"]]
           for name, doc in m["memories"].items()}
    program = [isa.decode(w) for w in mem["prog"]]
    p = m["parameters"]
    machine = isa_sim.Machine(p["ROWS"], p["COLS"], p["IN_W"], p["ACC_W"], p["IDX_W"], p["SPAD_DEPTH"],
                              p["WMEM_DEPTH"], p["IMEM_DEPTH"], p["PMEM_DEPTH"], p["PROG_DEPTH"])
    regions = m["trace_regions"] if trace else None
    r = isa_sim.run(machine, program, mem["wmem"], mem["imem"], mem["pmem"], words, regions)
    return _result(project, m, inputs, r.outputs, r.traces if trace else None, r.stamps,
                   ["functional model (isa_sim), not the RTL"])


# Splitting a batch over 2 simulator processes halves its simulation time but adds a second
# start-up (about 0.45 s of CPU, the time of 150-200 digits-CNN samples), so only batches this long
# are split, and only with a core to spare.
SPLIT_MIN_SAMPLES = 128


def processes_for(n: int) -> int:
    """Simulator processes for a batch of ``n`` samples: 2 where the batch is long enough and a
    second core is idle (one-minute load average at least 1.5 below the usable cores), else 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return 2 if n >= SPLIT_MIN_SAMPLES and cores >= 2 and cores - os.getloadavg()[0] >= 1.5 else 1


def simulate(project: Path, inputs: list[np.ndarray], trace: bool = True, processes: int | None = None) -> Simulation:
    """The project's RTL (``hw_sim/rtl.py``: Verilator under cocotb, the testbench
    ``hw_sim/systolic/tb_program.py`` + ``nnf_tb_harness.v``) on input codes; the samples are
    split over ``processes`` simulators run at once (default ``processes_for(n)``)."""
    try:
        from nnforge.hw_sim import rtl
    except ImportError as err:
        raise InputError(f"the systolic RTL simulation needs nnforge.hw_sim.rtl, which failed to import: {err}") from None
    missing = rtl.simulator_missing()
    if missing:
        raise InputError(f"the systolic RTL simulation needs a Verilog simulator: {missing}")
    m = _manifest(project)
    words = pack_inputs(m, inputs)
    # the project's own testbench when it has both halves (a project written before the harness
    # existed has a tb_program.py for the bare top: the package's then)
    own = Path(project).resolve() / "tb"  # absolute: the simulator runs in its own folder (PYTHONPATH)
    tb_dir = own if all((own / f).is_file() for f in (f"{TB_MODULE}.py", HARNESS_SOURCE)) else _package_tb()
    build_dir = rtl.build_harness(m["parameters"], harness=tb_dir / HARNESS_SOURCE)
    n = len(words)
    parts = max(1, min(processes or processes_for(n), n))
    bounds = [n * k // parts for k in range(parts + 1)]
    outputs, stamps, traces = [], [], {}
    with tempfile.TemporaryDirectory(prefix="nnf-systolic-") as tmp:
        jobs = []
        for k in range(parts):
            run_dir = Path(tmp) / f"run{k}"
            run_dir.mkdir()
            for doc in m["memories"].values():
                shutil.copyfile(project / doc["file"], run_dir / Path(doc["file"]).name)
            np.save(run_dir / "inputs.npy", words[bounds[k]:bounds[k + 1]])
            config = {"inputs": "inputs.npy", "golden": None, "trace": bool(trace),
                      "trace_regions": m["trace_regions"] if trace else {}, "results": "results.npz",
                      "cols": m["cols"], "in_bits": m["in_bits"], "max_cycles": m["max_cycles"]}
            (run_dir / "config.json").write_text(json.dumps(config))
            jobs.append((run_dir, {"NNF_TB_CONFIG": str(run_dir / "config.json")}))
        rtl.run_many(build_dir, TB_MODULE, jobs, [str(tb_dir)])
        for run_dir, _ in jobs:
            results = run_dir / "results.npz"
            if not results.is_file():
                raise InputError(f"the RTL simulation of {str(project)!r} must write results.npz, and it did not "
                                 f"(see the cocotb log above)")
            with np.load(results) as r:
                outputs.append(r["outputs"])
                stamps.append(r["stamps"])
                for key in r.files if trace else []:
                    if key.startswith("trace_"):
                        traces.setdefault(int(key[len("trace_"):]), []).append(r[key])
    outputs, stamps = np.concatenate(outputs), np.concatenate(stamps)
    traced = {layer: np.concatenate(parts_) for layer, parts_ in traces.items()} if trace else None
    if len(stamps) and any(not np.array_equal(stamps[0], s) for s in stamps):
        raise InputError("the RTL's SYNC stamps must be the same for every sample, and they differ")
    return _result(project, m, inputs, outputs, traced, stamps[0] if len(stamps) else [], [])


def _package_tb() -> Path:
    import nnforge.hw_sim

    return Path(nnforge.hw_sim.__file__).parent / "systolic"


__all__ = ["SPLIT_MIN_SAMPLES", "processes_for", "simulate", "simulate_model"]
