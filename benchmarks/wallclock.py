"""Equal-wall-time runs of fuse's optimizers, for benchmarks that compare them at the same seconds.

:func:`run_timed` runs ``fuse.optimize``'s optimizer with a wall-clock stop: a subclass stamps every history entry
with the seconds since the run started and stops once ``seconds`` have passed (checked after each step, as the other
stopping rules are). :func:`at_time` cuts such a history at ``T`` seconds: the best loss, evaluations and steps that
the run had reached by then, so two runs that overshoot ``T`` by different amounts are still compared at ``T``.
The library is not changed: the subclass only adds a stopping rule and a time stamp.
"""

from __future__ import annotations

import time

from fuse.optim import CONFIGS


def run_timed(chain, config, seconds: float | None = None, min_evaluations: int = 0):
    """``(optimizer, result)`` of ``config``'s optimizer on ``chain``, stopped after ``seconds`` (``None``: no limit),
    but not before ``min_evaluations`` candidates were scored (a run that is read both at equal time and at equal
    evaluations; with GCG's ``cascade`` a candidate scored on the primary's terms alone counts too).

    Every ``result.history`` entry gains ``"seconds"`` (since the start of ``run()``) and ``"candidates"`` (the
    candidates scored so far: ``evaluations`` plus the cascade's first-stage-only ones).
    """
    base = CONFIGS.get(type(config))
    if base is None:
        raise ValueError(f"config must be one of {[c.__name__ for c in CONFIGS]}, got {type(config).__name__}")
    if seconds is not None and not seconds > 0:
        raise ValueError(f"seconds must be > 0 (or None for no limit), got {seconds}")

    class Timed(base):
        def _reset(self):
            super()._reset()
            self._t0 = time.perf_counter()

        def _record(self, step):
            super()._record(step)
            self.history[-1]["seconds"] = time.perf_counter() - self._t0
            # candidates scored on any term: with GCG's cascade, also those scored on the primary's terms alone
            self.history[-1]["candidates"] = self.evaluations + self.evaluator.cascade_evaluations

        def _stop(self):
            why = super()._stop()
            if (why is None and seconds is not None and time.perf_counter() - self._t0 >= seconds
                    and self.evaluations + self.evaluator.cascade_evaluations >= min_evaluations):
                return "time"
            return why

    opt = Timed(chain, config)
    return opt, opt.run()


def at_time(history: list[dict], seconds: float) -> dict:
    """The last history entry recorded at or before ``seconds`` (``{"step": 0, ...inf}`` when none was)."""
    done = [h for h in history if h["seconds"] <= seconds]
    if not done:
        return {"step": 0, "evaluations": 0, "best_loss": float("inf"), "best_text": None, "seconds": 0.0}
    return done[-1]


def at_evaluations(history: list[dict], evaluations: int) -> dict:
    """The last history entry whose evaluations are at most ``evaluations`` (the first entry when none is)."""
    done = [h for h in history if h["evaluations"] <= evaluations]
    return done[-1] if done else history[0]


def at_step(history: list[dict], step: int) -> dict:
    """The history entry of step ``step`` (or the last one, when the run stopped earlier)."""
    done = [h for h in history if h["step"] <= step]
    return done[-1] if done else history[0]
