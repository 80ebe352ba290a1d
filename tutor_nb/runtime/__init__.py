"""The local runtime: OpenAI's Assistants API on 127.0.0.1, with a Jupyter kernel per thread.

    >>> from tutor_nb.runtime import start
    >>> rt = start(backend="replay")           # offline, recorded model turns
    >>> client = rt.client()                   # an openai.OpenAI pointed at it
    >>> rt.stop()

``python -m tutor_nb serve`` runs the same server in the foreground.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from pathlib import Path
from typing import Any

from .config import IN_PROCESS_TOKENS, Settings

__all__ = ["LocalRuntime", "Settings", "local_runtime", "start", "shared_runtime"]

#: runtimes served by this process, by base URL (so a client's settings can be looked up)
_served: "weakref.WeakValueDictionary[str, LocalRuntime]" = weakref.WeakValueDictionary()


class LocalRuntime:
    """A runtime served on a background thread of this process."""

    def __init__(self, settings: Settings) -> None:
        from .server import BackgroundServer

        self.settings = settings
        self._server = BackgroundServer(settings)
        self._server.start()
        self.base_url: str = self._server.base_url
        if settings.token:
            IN_PROCESS_TOKENS[self.base_url] = settings.token
        _served[self.base_url.rstrip("/")] = self

    @property
    def backend(self) -> str:
        return self.settings.backend

    @property
    def running(self) -> bool:
        return self._server.running

    def client(self, **kwargs: Any) -> Any:
        """An ``openai.OpenAI`` client for this runtime (extra keyword arguments go to it)."""
        import openai

        kwargs.setdefault("api_key", self.settings.token or "tutor-nb-local")  # the learner never types it
        return openai.OpenAI(base_url=self.base_url, **kwargs)

    def async_client(self, **kwargs: Any) -> Any:
        import openai

        kwargs.setdefault("api_key", self.settings.token or "tutor-nb-local")
        return openai.AsyncOpenAI(base_url=self.base_url, **kwargs)

    def stop(self) -> None:
        """Stop serving; kernels shut down and active runs end as failed."""
        IN_PROCESS_TOKENS.pop(self.base_url, None)
        self._server.stop()

    def __enter__(self) -> "LocalRuntime":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<tutor_nb runtime {state} at {self.base_url} backend={self.backend} data={self.settings.data_dir}>"

    def _repr_html_(self) -> str:
        import html

        state = "running" if self.running else "stopped"
        return (f"<b>tutor_nb runtime</b> {state} at <code>{html.escape(self.base_url)}</code> "
                f"· backend <code>{html.escape(self.backend)}</code> · data <code>{html.escape(str(self.settings.data_dir))}</code>")


def local_runtime(base_url: str) -> LocalRuntime | None:
    """The running runtime this process serves at ``base_url``, if any."""
    found = _served.get(str(base_url).rstrip("/"))
    return found if found is not None and found.running else None


def start(**settings: Any) -> LocalRuntime:
    """Serve a runtime on a background thread. Keyword arguments are :class:`Settings` fields.

    ``port`` defaults to 0 (a free port) here, unlike the CLI's fixed 8765. It always has a token
    (a new random one unless ``token`` is given), which ``client()`` passes on: other users of this
    machine cannot use the runtime.
    """
    settings.setdefault("port", 0)
    if "data_dir" in settings and settings["data_dir"] is not None:
        settings["data_dir"] = Path(settings["data_dir"])
    elif "data_dir" in settings:
        del settings["data_dir"]
    return LocalRuntime(Settings(**settings))


#: pause between replayed pieces in the runtime behind ``connect()``, so code appears as if typed
SHARED_REPLAY_DELAY = 0.01

_shared: LocalRuntime | None = None
_shared_lock = threading.Lock()


def shared_runtime(
    *, backend: str | None = None, model_base_url: str | None = None, model: str | None = None,
    model_api_key: str | None = None, announce: bool = True, **settings: Any,
) -> LocalRuntime:
    """The process-wide runtime behind ``tutor_nb.connect()``, started on first use.

    With no backend named: ``chat`` (OpenAI's Chat Completions) when an API key is found or a
    model URL is given, else ``replay``, which plays at a readable pace (``SHARED_REPLAY_DELAY``).
    Asking for a different backend restarts it.
    """
    global _shared
    if backend is None:
        if model_base_url:
            backend = "chat"
        else:
            from ..keys import load_api_key

            model_api_key = model_api_key or load_api_key(required=False)
            backend = "chat" if model_api_key else "replay"
    if backend == "replay":
        settings.setdefault("replay_delay", SHARED_REPLAY_DELAY)
    wanted = dict(backend=backend, model_base_url=model_base_url, model=model, model_api_key=model_api_key, **settings)
    with _shared_lock:
        if _shared is not None and _shared.running and all(
            getattr(_shared.settings, k) == v for k, v in wanted.items() if k != "model_api_key"
        ):
            return _shared
        if _shared is not None:
            _shared.stop()
        _shared = start(**wanted)
        if announce:
            print(_describe(_shared))
        return _shared


def _describe(rt: LocalRuntime) -> str:
    s = rt.settings
    from .server import isolation_note

    if s.backend == "replay":
        line = f"tutor_nb: offline runtime at {rt.base_url} (replay: recorded model turns, real code execution)"
    else:
        target = s.model_base_url or "OpenAI's Chat Completions API"
        line = f"tutor_nb: runtime at {rt.base_url} using the model at {target} (chat backend)"
    note = isolation_note(rt._server.app)
    return f"{line}\ntutor_nb: {note}" if note else line


@atexit.register
def _stop_shared() -> None:
    if _shared is not None:
        _shared.stop()
