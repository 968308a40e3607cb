"""Console progress: a live bar on a terminal, plain periodic lines in logs (clusters, CI)."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


class Progress:
    """Shows env steps and the latest statistics.

    On a terminal this is a tqdm bar; when stderr is not a terminal (a batch job's log file)
    it prints one line at most every ``min_interval`` seconds, and on every forced update.

    Args:
        total: env steps of the whole run.
        initial: env steps already taken (when resuming).
        desc: label, e.g. the task id.
        enabled: False prints nothing.
        min_interval: seconds between plain lines.
    """

    def __init__(self, total: int, initial: int, desc: str, enabled: bool = True, min_interval: float = 30.0):
        self.total, self.step, self.desc = total, initial, desc
        self.enabled = enabled
        self.min_interval = min_interval
        self._last_line = -float("inf")
        self._start = time.monotonic()
        interactive = enabled and sys.stderr.isatty()
        self.bar = (
            tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, desc=desc)
            if interactive
            else None
        )

    def update(self, steps: int) -> None:
        """Advances by ``steps`` env steps."""
        self.step += steps
        if self.bar is not None:
            self.bar.update(steps)

    def show(self, stats: dict[str, str], force: bool = False) -> None:
        """Displays ``stats`` (name -> formatted value)."""
        if self.bar is not None:
            self.bar.set_postfix(stats, refresh=False)
            return
        now = time.monotonic()
        if self.enabled and (force or now - self._last_line >= self.min_interval):
            self._last_line = now
            fields = " | ".join(f"{k} {v}" for k, v in stats.items())
            elapsed = time.strftime("%H:%M:%S", time.gmtime(now - self._start))
            print(f"[meow] {self.desc} step {self.step:,}/{self.total:,} | {fields} | {elapsed}", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
