"""The search space: per-layer widths, prune fraction and sharing width, plus scale mode and
calibration method; and how one point of it becomes the two configs ``compile`` reads.

A point is a flat dict of Optuna parameters (``"<layer>:weight_bits"``, ``"<layer>:act_bits"``,
``"<layer>:prune"``, ``"<layer>:share"``, ``"scale_mode"``, ``"calibration"``).  ``configs``
turns it into a quantization config (docs/quant_config.md: every weighted layer under
``layers``, the rest at the ``default`` w8a8) and a compression config (docs/compression.md:
``layer_sparsity`` / ``layer_share_bits``, ``refine = "lsq"``), exactly what ``best.toml``
holds.  ``share = 0`` means no sharing; ``prune = 0`` no pruning.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

BITS = (2, 3, 4, 5, 6, 7, 8, 16)
SHARE = (0, 2, 3, 4, 5, 6)  # 0: no weight sharing
PRUNE_MAX = 0.97
PRUNE_STEP = 0.01
SCALE_MODES = ("float", "pow2")
CALIBRATIONS = ("mse", "percentile", "minmax", "entropy")
BASELINE_BITS = 8  # the safe baseline every knob moves away from (and the default table's widths)


@dataclass
class LayerSpace:
    """The choices of one weighted layer (conv2d or dense)."""

    name: str
    op: str
    weight_bits: list[int] = field(default_factory=lambda: list(BITS))
    act_bits: list[int] = field(default_factory=lambda: list(BITS))
    prune_max: float = PRUNE_MAX
    share: list[int] = field(default_factory=lambda: list(SHARE))


@dataclass
class SearchSpace:
    """Every layer's choices and the global ones; ``to_dict``/``from_dict`` round-trip (stored with
    the study, so a resumed study asks Optuna for the same distributions)."""

    layers: list[LayerSpace]
    scale_modes: list[str] = field(default_factory=lambda: list(SCALE_MODES))
    calibrations: list[str] = field(default_factory=lambda: list(CALIBRATIONS))

    @classmethod
    def full(cls, layers: list[tuple[str, str]]) -> SearchSpace:
        """The whole space over ``(name, op)`` weighted layers."""
        return cls([LayerSpace(name, op) for name, op in layers])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchSpace:
        return cls([LayerSpace(**l) for l in d["layers"]], list(d["scale_modes"]), list(d["calibrations"]))

    def suggest(self, trial) -> dict[str, Any]:
        """One point, asked of an Optuna trial."""
        params: dict[str, Any] = {}
        for l in self.layers:
            params[f"{l.name}:weight_bits"] = trial.suggest_categorical(f"{l.name}:weight_bits", l.weight_bits)
            params[f"{l.name}:act_bits"] = trial.suggest_categorical(f"{l.name}:act_bits", l.act_bits)
            params[f"{l.name}:prune"] = (trial.suggest_float(f"{l.name}:prune", 0.0, l.prune_max, step=PRUNE_STEP)
                                         if l.prune_max > 0 else 0.0)
            params[f"{l.name}:share"] = trial.suggest_categorical(f"{l.name}:share", l.share)
        params["scale_mode"] = trial.suggest_categorical("scale_mode", self.scale_modes)
        params["calibration"] = trial.suggest_categorical("calibration", self.calibrations)
        return params

    def baseline(self) -> dict[str, Any]:
        """w8a8 everywhere, nothing pruned or shared, the first scale mode and calibration."""
        params: dict[str, Any] = {}
        for l in self.layers:
            params.update({f"{l.name}:weight_bits": BASELINE_BITS, f"{l.name}:act_bits": BASELINE_BITS,
                           f"{l.name}:prune": 0.0, f"{l.name}:share": 0})
        params.update(scale_mode=self.scale_modes[0], calibration=self.calibrations[0])
        return params

    def clamp(self, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` moved onto the nearest allowed values (seed points after the space shrank)."""
        out = dict(params)
        for l in self.layers:
            for knob, choices in (("weight_bits", l.weight_bits), ("act_bits", l.act_bits), ("share", l.share)):
                key = f"{l.name}:{knob}"
                if out[key] not in choices:
                    out[key] = min(choices, key=lambda c: (abs(c - out[key]) if c else 99, c))
            key = f"{l.name}:prune"
            out[key] = round(min(max(out.get(key, 0.0), 0.0), l.prune_max) / PRUNE_STEP) * PRUNE_STEP
            out[key] = round(out[key], 2)
            if l.prune_max <= 0:
                out.pop(key)
        if out["scale_mode"] not in self.scale_modes:
            out["scale_mode"] = self.scale_modes[0]
        if out["calibration"] not in self.calibrations:
            out["calibration"] = self.calibrations[0]
        return out


def configs(params: dict[str, Any], layer_names: list[str]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The quantization config and compression config (file schema) of one point."""
    quant: dict[str, Any] = {
        "default": {"weight_bits": BASELINE_BITS, "act_bits": BASELINE_BITS,
                    "scale_mode": params["scale_mode"], "calibration": params["calibration"]},
        "layers": {n: {"weight_bits": int(params[f"{n}:weight_bits"]), "act_bits": int(params[f"{n}:act_bits"])}
                   for n in layer_names},
    }
    sparsity = {n: round(float(params.get(f"{n}:prune", 0.0)), 4) for n in layer_names
                if params.get(f"{n}:prune", 0.0) > 0}
    share = {n: int(params[f"{n}:share"]) for n in layer_names if params[f"{n}:share"]}
    if not sparsity and not share:
        return quant, None
    comp: dict[str, Any] = {"refine": "lsq"}
    if sparsity:
        comp["layer_sparsity"] = sparsity
    if share:
        comp["layer_share_bits"] = share
    return quant, comp


def describe(params: dict[str, Any], layer_names: list[str]) -> str:
    """One line per point, e.g. ``w4a8 p0.95 s3 | w4a8 p0.95 s3 | w8a8 p0.50 s4; float mse``."""
    parts = []
    for n in layer_names:
        text = f"w{params[f'{n}:weight_bits']}a{params[f'{n}:act_bits']}"
        if params.get(f"{n}:prune", 0.0):
            text += f" p{params[f'{n}:prune']:.2f}"
        if params[f"{n}:share"]:
            text += f" s{params[f'{n}:share']}"
        parts.append(text)
    return " | ".join(parts) + f"; {params['scale_mode']} {params['calibration']}"


__all__ = ["BITS", "SHARE", "PRUNE_MAX", "SCALE_MODES", "CALIBRATIONS", "LayerSpace", "SearchSpace", "configs",
           "describe"]
