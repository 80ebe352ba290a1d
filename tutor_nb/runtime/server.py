"""Serving the runtime with uvicorn: in the foreground (CLI) or on a background thread.

The background thread owns its own event loop, so it works inside a Jupyter or Colab
kernel whose loop is already running.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import uvicorn

from ..errors import RuntimeStartError
from .app import create_app
from .config import Settings, remove_server_file, write_server_file
from .kernel_boot import make_undumpable


def _bind(settings: Settings) -> socket.socket:
    """Bind the listening socket ourselves so port 0 gives a known free port before serving."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # so asyncio sets TCP_NODELAY on connections
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sock.close()
        raise RuntimeStartError(
            f"Cannot listen on {settings.host}:{settings.port} ({exc.strerror}). Another runtime may be "
            "running there: connect to it, stop it, or pick another port (port 0 picks a free one)."
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def base_url(settings: Settings, sock: socket.socket) -> str:
    host = settings.host if ":" not in settings.host else f"[{settings.host}]"
    return f"http://{host}:{sock.getsockname()[1]}/v1"


def _server(settings: Settings) -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(settings), log_level="warning", access_log=False, lifespan="on",
        timeout_graceful_shutdown=3, ws="none",
    )
    return uvicorn.Server(config)


def ready_line(settings: Settings, url: str) -> str:
    """What ``serve`` prints once it accepts requests: the URL, and the token when it made one."""
    line = f"tutor_nb runtime ({settings.backend}) ready at {url}"
    if settings.token_generated:
        return f"{line} api_key={settings.token}"
    if settings.token:
        return f"{line} (api_key: the token you gave it)"
    return f"{line} (no token: any program of any user on this machine can use it; web pages still cannot)"


def isolation_note(app: Any) -> str | None:
    """One line on what model code can reach here when the sandbox could not confine it (docs/sandbox.md)."""
    runtime = getattr(getattr(app, "state", None), "runtime", None)
    sandbox = getattr(runtime, "sandbox", None)
    if sandbox is None or sandbox.users is not None or sandbox.bwrap:
        return None
    if sandbox.isolation_problem:
        return f"note: {sandbox.isolation_problem}: model code can read, write and signal whatever root can."
    return ("note: kernels run as you, without bubblewrap: model code can read and write your files, use the "
            "network and signal your processes, but not read this server's environment or memory. Install "
            "bubblewrap to confine it (docs/sandbox.md).")


def serve(settings: Settings, *, announce: Any = None) -> None:
    """Serve in the foreground until interrupted (the CLI); announces the URL once requests are accepted."""
    make_undumpable()  # kernels of this user cannot read our environment (the keys) or memory
    sock = _bind(settings)
    server = _server(settings)
    announce = announce or (lambda line: print(line, flush=True))  # a pipe reader must see it now

    async def main() -> None:
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if serving.done():
                serving.result()
                raise RuntimeStartError("The runtime failed to start; see the messages above.")
            await asyncio.sleep(0.02)
        url = base_url(settings, sock)
        write_server_file(settings.data_dir, url, settings.token)
        announce(ready_line(settings, url))
        note = isolation_note(server.config.app)
        if note:
            announce(note)
        await serving

    try:
        asyncio.run(main())
    finally:
        remove_server_file(settings.data_dir)


class BackgroundServer:
    """uvicorn on a daemon thread with its own loop; ``start`` returns once it accepts requests."""

    def __init__(self, settings: Settings) -> None:
        make_undumpable()  # this process holds the keys; its kernels must not read them from /proc
        self.settings = settings
        self._sock = _bind(settings)
        self.base_url = base_url(settings, self._sock)
        self._server = _server(settings)
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self._run, name="tutor_nb-runtime", daemon=True)
        self._error: BaseException | None = None

    @property
    def app(self) -> Any:
        return self._server.config.app

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._sock]))
        except BaseException as exc:  # surfaced by start()
            self._error = exc

    def start(self, timeout: float = 60.0) -> None:
        self._thread.start()
        waited = 0.0
        while not self._server.started:
            if not self._thread.is_alive() or waited > timeout:
                self.stop()
                raise RuntimeStartError(
                    f"The runtime did not start ({self._error or 'timed out'}). Check that ipykernel and "
                    "jupyter_client are installed (pip install tutor_nb) and the data folder is writable."
                )
            self._thread.join(0.02)
            waited += 0.02

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and self._server.started and not self._server.should_exit

    def stop(self, timeout: float = 15.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._sock.close()
