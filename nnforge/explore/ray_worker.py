"""Where trials run: in this process, or on Ray actors (one ``Evaluator`` per worker).

Both pools have the same small surface: ``submit(key, params)`` hands a point to an idle
evaluator, ``next_done()`` returns ``(key, metrics)`` of a finished one, ``idle`` says how many
more can be submitted now.  The driver keeps the Optuna study (ask and tell) and its storage;
workers only evaluate, so results land in the one storage whatever the cluster.

``RayPool`` starts ``workers`` actors, each building its ``Evaluator`` once (the model is
imported, calibrated and its float predictions made once per worker) and reusing it for every
trial it gets.  ``address``: ``"auto"`` runs ``ray.init()`` (a local cluster of ``workers``
CPUs, or the cluster ``RAY_ADDRESS`` names), any other value ``ray.init(address=...)`` after a
check that the address answers at all (an unreachable one is an error naming it, not a hang).
"""

from __future__ import annotations

import socket
from collections import deque
from typing import Any

from nnforge.compiler.errors import InputError, shown


class LocalPool:
    """Evaluates in this process, one point at a time."""

    def __init__(self, make_evaluator):
        self.evaluator = make_evaluator()
        self._queue: deque = deque()

    @property
    def idle(self) -> int:
        return 1 - len(self._queue)

    def submit(self, key, params: dict[str, Any]) -> None:
        self._queue.append((key, params))

    def next_done(self) -> tuple[Any, dict]:
        key, params = self._queue.popleft()
        return key, self.evaluator.evaluate(params)

    def pending(self) -> list:
        return [k for k, _ in self._queue]

    def close(self) -> None:
        self._queue.clear()


def check_address(address: str) -> None:
    """Raise InputError unless ``host:port`` accepts a TCP connection within 5 s."""
    host, sep, port = address.replace("ray://", "").rpartition(":")
    if not sep or not port.isdigit():
        raise InputError(f"--ray must be auto or a Ray cluster address HOST:PORT, not {shown(address)}")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise InputError(f"--ray address {address!r} must be a reachable Ray cluster, not unreachable "
                         f"({err.strerror or err})") from None


class RayPool:
    """Evaluates on ``workers`` Ray actors (see the module docstring)."""

    def __init__(self, make_evaluator, address: str, workers: int):
        try:
            import ray
        except ImportError:  # a dependency: only a broken install lacks it
            raise InputError("--ray needs the ray package installed (pip install ray)") from None
        self.ray = ray
        self._started = False
        if not ray.is_initialized():
            if address == "auto":
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            else:
                check_address(address)
                try:
                    ray.init(address=address, log_to_driver=False, logging_level="ERROR")
                except Exception as err:  # noqa: BLE001 - ray raises ConnectionError, RuntimeError, ...
                    raise InputError(f"--ray address {address!r} must be a Ray cluster that accepts this "
                                     f"driver, not one that refused it ({' '.join(str(err).split())[:200]})") from None
            self._started = True

        @ray.remote(num_cpus=1)
        class EvaluatorActor:
            def __init__(self, factory):
                self.evaluator = factory()

            def evaluate(self, params):
                return self.evaluator.evaluate(params)

            def ready(self):
                return True

        factory = ray.put(make_evaluator)
        self.actors = [EvaluatorActor.remote(factory) for _ in range(workers)]
        try:
            ray.get([a.ready.remote() for a in self.actors])  # every worker built its evaluator
        except ray.exceptions.RayActorError as err:
            self.close()
            raise InputError(f"a Ray worker failed to load the model: {' '.join(str(err).split())[:300]}") from None
        self._free = list(self.actors)
        self._running: dict = {}  # object ref -> (key, actor)

    @property
    def idle(self) -> int:
        return len(self._free)

    def submit(self, key, params: dict[str, Any]) -> None:
        actor = self._free.pop()
        self._running[actor.evaluate.remote(params)] = (key, actor)

    def next_done(self) -> tuple[Any, dict]:
        done, _ = self.ray.wait(list(self._running), num_returns=1)
        key, actor = self._running.pop(done[0])
        self._free.append(actor)
        try:
            return key, self.ray.get(done[0])
        except self.ray.exceptions.RayError as err:
            return key, {"error": f"Ray worker failed: {' '.join(str(err).split())[:300]}"}

    def pending(self) -> list:
        return [k for k, _ in self._running.values()]

    def close(self) -> None:
        for ref in list(getattr(self, "_running", {})):
            self.ray.cancel(ref, force=True)
        for a in getattr(self, "actors", []):
            self.ray.kill(a)
        self.actors, self._free, self._running = [], [], {}
        if self._started:  # a cluster this pool started; one the caller started stays up
            self._started = False
            self.ray.shutdown()


__all__ = ["LocalPool", "RayPool", "check_address"]
