"""The chat panel: ``tutor_nb.ChatPanel``.

Modules, one job each: ``transcript`` (Assistants stream events -> plain data), ``responses``
(the same from Responses stream events), ``conversation`` (ids, the run worker thread, Stop),
``stream`` (how changes reach the page, and why), ``render`` (Markdown, math, code, logs as
safe HTML), ``views`` (one widget per item), ``frontend`` (scripts the page runs: a new cell,
the clipboard, scrolling), ``offline`` (the recorded questions replay answers), ``widget``
(the panel itself), ``export`` (Markdown and JSON).
"""

from .widget import ChatPanel

__all__ = ["ChatPanel"]
