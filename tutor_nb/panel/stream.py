"""How streamed changes reach the page: one buffer, coalesced flushes, two kinds of driver.

The traps (each reported upstream) and what this module does about them:

* Widget values set from a background thread do not render in Colab
  (googlecolab/colabtools#3373); as reported there, state sent while a cell (or callback)
  is running does render. So in Colab (``updates="blocking"``, chosen automatically)
  the Send button's callback does not return until the run ends, and the flushes are made
  by that callback's own thread, inside its request. Scripted ``panel.send()`` also starts a
  background flusher (enough outside Colab); ``panel.wait()`` flushes from the caller's
  thread too and, in Colab, re-sends the reply's widget state once at the end, so a reply
  that streamed while no request was running still shows up.
* A blocked kernel cannot process the Stop click (comm messages queue behind the running
  callback). Polling the kernel from inside a callback (``jupyter-ui-poll``) is tied to
  ipykernel internals: with ipykernel 7.4 its 1.1.0 release makes the kernel's shell loop
  raise ``AttributeError`` on every message. So in blocking mode Stop is the notebook's
  interrupt (Colab: Runtime > Interrupt), which :meth:`Pump.run` turns into ``runs.cancel``.
* Everywhere else (JupyterLab 4, Notebook 7, VS Code; ipywidgets 7 and 8; ipykernel 6 and 7)
  comm messages from a thread are delivered, so the default ``updates="thread"`` returns
  from the Send callback at once: the kernel stays free and the Stop button works. The
  ipykernel 7 change of thread output routing (ipython/ipykernel#1450,
  jupyter-widgets/ipywidgets#4020) only affects ``print``/``display`` from threads; the panel
  never prints from a thread and uses no ``Output`` widget on the streaming path.
* asyncio tasks started in a cell pause once it ends under ipykernel 7
  (jupyter-widgets/ipywidgets#4012, ipython/ipykernel#1510): no asyncio is used.

In both modes the run's worker thread only appends to the transcript (under a lock) and
marks it dirty. A :class:`Coalescer` applies the changes to widgets at most once per
``interval`` (50 ms, so at most ~20 updates a second whatever the delta rate), and the
view layer then touches only the widgets of the item being written.
"""

from __future__ import annotations

import threading
import time
from typing import Callable


class Coalescer:
    """Runs ``apply`` when changes are pending, at most once per ``interval`` seconds.

    ``mark`` is cheap and may be called from any thread for every delta; ``maybe_flush``
    and ``flush`` may be called from several threads and never overlap.
    """

    def __init__(self, apply: Callable[[], None], interval: float = 0.05, clock: Callable[[], float] = time.monotonic) -> None:
        self._apply = apply
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._dirty = False
        self._last = float("-inf")
        self.flushes = 0

    def mark(self) -> None:
        self._dirty = True

    @property
    def dirty(self) -> bool:
        return self._dirty

    def due(self) -> float:
        """Seconds until a flush is allowed (0 when it is)."""
        return max(0.0, self._last + self.interval - self._clock())

    def maybe_flush(self) -> bool:
        if not self._dirty or self.due() > 0:
            return False
        return self.flush()

    def flush(self) -> bool:
        with self._lock:
            # cleared before applying: a change arriving meanwhile makes the next flush happen
            self._dirty = False
            self._last = self._clock()
            self._apply()
            self.flushes += 1
        return True


class Pump:
    """Drives a :class:`Coalescer` until a run ends, on whichever thread calls :meth:`run`.

    ``tick`` re-marks the view every second while busy, so elapsed times in the status
    line advance even when no event arrives.
    """

    def __init__(self, coalescer: Coalescer, busy: Callable[[], bool], tick: float = 1.0) -> None:
        self.coalescer = coalescer
        self._busy = busy
        self._tick = tick

    def run(self, timeout: float | None = None, on_interrupt: Callable[[], None] | None = None) -> bool:
        """Flush until not busy (True) or ``timeout`` passes (False); always flushes at the end."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last_tick = time.monotonic()
        try:
            while self._busy():
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    return False
                if now - last_tick >= self._tick:
                    last_tick = now
                    self.coalescer.mark()
                self.coalescer.maybe_flush()
                time.sleep(max(0.005, min(self.coalescer.due() or self.coalescer.interval, 0.05)))
        except KeyboardInterrupt:
            if on_interrupt is None:
                raise
            on_interrupt()
            return self.run(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
        finally:
            self.coalescer.flush()
        return True
