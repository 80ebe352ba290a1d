"""The chat panel: ``tutor_nb.ChatPanel``.

Modules, one job each: ``transcript`` (stream events -> plain data), ``conversation`` (ids,
the run worker thread, Stop), ``stream`` (how changes reach the page, and why),
``render`` (Markdown, math, code, logs as safe HTML), ``views`` (one widget per item),
``widget`` (the panel itself), ``export`` (Markdown and JSON).
"""

from .widget import ChatPanel

__all__ = ["ChatPanel"]
