"""Codegen scale test: the onnx wheel's light SqueezeNet and ResNet-50 through ``nnforge compile``.

For each model, in its own process (so peak memory is per model): load, quantize (w8a8,
8 random normal calibration samples), then ``compile_model`` for the ``hls`` backend
(partition, codegen, estimates, golden vectors on 1 sample, writing the project; no g++).
The models go in unmodified: their final opset-9 Softmax (softmax + reshape) stays on the host,
and ResNet-50's two-input ``Sum`` residuals import as adds.
Prints seconds per phase, the peak resident memory (``ru_maxrss``) after each phase, and
the project's size.  Measurement only.

    python bench/hls_light_models.py [--models light_squeezenet,light_resnet50] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
PHASES = ["load", "quantize", "partition", "codegen", "estimates", "golden vectors", "project files", "writing"]


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def one(name: str) -> dict:
    import nnforge

    times: dict[str, float] = {}
    peaks: dict[str, float] = {}
    t = time.perf_counter()
    model = nnforge.load(LIGHT / f"{name}.onnx")
    times["load"], peaks["load"], t = time.perf_counter() - t, _rss_mib(), time.perf_counter()
    spec = model.inputs[0]
    shape = [1 if isinstance(d, str) else d for d in spec.shape]
    batch = 8 if isinstance(spec.shape[0], str) else shape[0]
    reps = 8 // batch if 8 % batch == 0 else 1
    calib = np.random.default_rng(0).normal(size=[batch * reps] + shape[1:]).astype(np.float32)
    qmodel = nnforge.quantize(model, [calib], "w8a8", batch_size=batch)
    times["quantize"], peaks["quantize"] = time.perf_counter() - t, _rss_mib()

    start: dict[str, float] = {}

    def step(phase: str, done: int, total: int) -> None:
        if done == 0:
            start[phase] = time.perf_counter()
        elif done == total:
            times[phase] = time.perf_counter() - start[phase]
            peaks[phase] = _rss_mib()

    with tempfile.TemporaryDirectory(prefix="nnforge-hls-light-") as tmp:
        out = Path(tmp) / name
        t = time.perf_counter()
        project = nnforge.compile_model(qmodel, "hls", out, golden_inputs=[calib[:batch]], progress=step)
        total_compile = time.perf_counter() - t
        files = [p for p in out.rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        src = sum(p.stat().st_size for p in (out / "src").rglob("*") if p.is_file())
        kernels, host = len(project.report["kernels"]), len(project.report["host"])
    return {"model": name, "times_s": times, "peak_rss_mib": peaks, "compile_s": total_compile,
            "files": len(files), "project_bytes": size, "src_bytes": src, "kernels": kernels, "host": host,
            "params": model.summary().total_params}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="light_squeezenet,light_resnet50")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # child process: one model, JSON on stdout
    ap.add_argument("--json", type=Path, help="write the rows as JSON")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one)))
        return
    rows = []
    for name in args.models.split(","):
        proc = subprocess.run([sys.executable, __file__, "--one", name], capture_output=True, text=True)
        if proc.returncode:
            print(f"{name}: failed\n{proc.stderr[-3000:]}", file=sys.stderr)
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"\n{name}: {row['params']:,} parameters, {row['kernels']} kernels, {row['host']} host items, "
              f"{row['files']} files, {row['project_bytes'] / 2**20:.1f} MiB ({row['src_bytes'] / 2**20:.1f} MiB src/)")
        print(f"  {'phase':16s} {'seconds':>8s} {'peak RSS MiB':>13s}")
        for phase in PHASES:
            if phase in row["times_s"]:
                print(f"  {phase:16s} {row['times_s'][phase]:8.2f} {row['peak_rss_mib'][phase]:13.0f}")
        print(f"  {'compile total':16s} {row['compile_s']:8.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
