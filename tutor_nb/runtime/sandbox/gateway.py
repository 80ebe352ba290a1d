"""Kernels on a Jupyter Kernel Gateway or Enterprise Gateway instead of on this machine.

Both gateways speak Jupyter's REST API for kernels (``POST /api/kernels``, interrupt, ``DELETE``) and
carry the kernel's channels over one WebSocket (``/api/kernels/{id}/channels``, each message a JSON
object naming its channel), as ``jupyter_server``'s gateway client uses them. :class:`GatewayLauncher`
has the local launcher's face, so the pool, the runner, timeouts, interrupts and output capture are the
same; what differs is said by the kernel: it has no local process (limits are the gateway's, e.g. a
pod's), and its folder is on the gateway's side, so files are staged into it and back out through the
kernel itself, by code it runs (no shared disk assumed).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import queue
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
from jupyter_client.jsonutil import json_default
from jupyter_client.session import Session

from tutor_nb.errors import SandboxError
from tutor_nb.runtime import kernel_boot, limits

from .kernel import START_TIMEOUT, Kernel, wait_until_ready

TOKEN_ENV = "TUTOR_NB_GATEWAY_TOKEN"
CHUNK = 3 * 1024 * 1024  # bytes of a file per message (as base64 it stays under tornado's 10 MiB frame limit)
MIME = "application/x-tutor-nb-file"
ALIVE_CHECK_EVERY = 2.0  # seconds between REST checks that the kernel still exists


class GatewayError(SandboxError):
    """The kernel gateway refused or failed a request; the message says which and what it answered."""


class GatewayKernelManager:
    """The part of ``AsyncKernelManager`` the sandbox uses, for one kernel on a gateway."""

    provisioner = None  # no local process: no exit code to read

    def __init__(self, launcher: GatewayLauncher) -> None:
        self.launcher = launcher
        self.kernel_id: str | None = None
        self.dead = False
        self._checked = 0.0

    def client(self) -> GatewayKernelClient:
        return GatewayKernelClient(self)

    async def start_kernel(self, env: dict[str, str]) -> None:
        body = {"name": self.launcher.kernel_name, "env": env}
        answer = await self.launcher.request("POST", "/api/kernels", json=body, timeout=START_TIMEOUT)
        self.kernel_id = answer["id"]

    async def is_alive(self) -> bool:
        if self.dead or self.kernel_id is None:
            return False
        loop = asyncio.get_running_loop()
        if loop.time() - self._checked >= ALIVE_CHECK_EVERY:
            self._checked = loop.time()
            try:
                info = await self.launcher.request("GET", f"/api/kernels/{quote(self.kernel_id)}", missing_ok=True)
            except GatewayError:
                return True  # the gateway is slow or flaky: the channels say when the kernel is gone
            if info is None or info.get("execution_state") == "dead":
                self.dead = True
        return not self.dead

    async def interrupt_kernel(self) -> None:
        if self.kernel_id is not None:
            await self.launcher.request("POST", f"/api/kernels/{quote(self.kernel_id)}/interrupt", json={})

    async def shutdown_kernel(self, now: bool = True) -> None:
        self.dead = True
        if self.kernel_id is not None:
            await self.launcher.request("DELETE", f"/api/kernels/{quote(self.kernel_id)}", missing_ok=True)


class GatewayKernelClient:
    """The part of ``AsyncKernelClient`` the sandbox uses, over the gateway's channels WebSocket."""

    def __init__(self, km: GatewayKernelManager) -> None:
        self.km = km
        self.session = Session(username="tutor_nb")
        self._queues: dict[str, asyncio.Queue[dict]] = {name: asyncio.Queue() for name in ("shell", "iopub", "stdin", "control")}
        self._socket: Any = None
        self._connected: asyncio.Future[None] | None = None
        self._reader: asyncio.Task | None = None
        self._outbox: list[str] = []

    def start_channels(self) -> None:
        self._connected = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._run())

    def stop_channels(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def _run(self) -> None:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        assert self._connected is not None and self.km.kernel_id is not None
        launcher = self.km.launcher
        request = HTTPRequest(launcher.ws_url(f"/api/kernels/{quote(self.km.kernel_id)}/channels"),
                              headers=launcher.headers(), connect_timeout=START_TIMEOUT, request_timeout=START_TIMEOUT)
        try:
            self._socket = await websocket_connect(request, max_message_size=64 * 1024 * 1024)
        except Exception as exc:
            self.km.dead = True
            self._connected.set_exception(GatewayError(f"the gateway's channels for kernel {self.km.kernel_id} "
                                                       f"did not open ({exc!r})"))
            return
        self._connected.set_result(None)
        for text in self._outbox:
            await self._socket.write_message(text)
        self._outbox.clear()
        try:
            while (text := await self._socket.read_message()) is not None:
                msg = json.loads(text)
                channel = msg.pop("channel", "iopub")
                if channel == "iopub" and msg.get("msg_type") == "status" and \
                        msg.get("content", {}).get("execution_state") in ("dead", "restarting"):
                    self.km.dead = True  # the gateway's restarter gives a fresh kernel: the state is gone either way
                queue_ = self._queues.get(channel)
                if queue_ is not None:
                    queue_.put_nowait(msg)
        finally:
            self.km.dead = True  # the WebSocket closed: the kernel was shut down or the gateway went away

    def _send(self, channel: str, msg_type: str, content: dict) -> str:
        msg = self.session.msg(msg_type, content)
        text = json.dumps({**msg, "channel": channel, "buffers": []}, default=json_default)
        if self._socket is None:
            self._outbox.append(text)  # sent once the WebSocket is open
        else:
            asyncio.ensure_future(self._socket.write_message(text))
        return msg["header"]["msg_id"]

    def kernel_info(self) -> str:
        return self._send("shell", "kernel_info_request", {})

    def execute(self, code: str, silent: bool = False, store_history: bool = True, user_expressions: dict | None = None,
                allow_stdin: bool | None = None, stop_on_error: bool = True) -> str:
        return self._send("shell", "execute_request", {
            "code": code, "silent": silent, "store_history": store_history, "user_expressions": user_expressions or {},
            "allow_stdin": bool(allow_stdin), "stop_on_error": stop_on_error})

    async def _get(self, channel: str, timeout: float | None) -> dict:
        if self._connected is not None and not self._connected.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._connected), timeout)
            except asyncio.TimeoutError:
                raise queue.Empty from None
        if self._connected is not None and self._connected.exception() is not None:
            raise queue.Empty
        try:
            return await asyncio.wait_for(self._queues[channel].get(), timeout)
        except asyncio.TimeoutError:
            raise queue.Empty from None

    async def get_iopub_msg(self, timeout: float | None = None) -> dict:
        return await self._get("iopub", timeout)

    async def get_shell_msg(self, timeout: float | None = None) -> dict:
        return await self._get("shell", timeout)


@dataclass(eq=False)
class RemoteKernel(Kernel):
    """A kernel on the gateway: no local process, and a folder of its own there that files are staged through."""

    remote_folder: str = ""
    remote_seen: dict[str, tuple[int, int]] = field(default_factory=dict)  # what the remote folder held, as listed
    local_seen: dict[str, tuple[int, int]] = field(default_factory=dict)  # the local copies as last written or sent

    @property
    def pid(self) -> int | None:  # type: ignore[override]
        return None

    def code_folder(self, workdir: Path) -> str:
        return self.remote_folder

    async def stage_in(self, workdir: Path) -> None:
        """Send files that are new or changed here (uploads, a fresh kernel) into the remote folder."""
        local = {str(p.relative_to(workdir)): sig for p, sig in limits.snapshot(workdir).items()}
        for rel in sorted(set(self.local_seen) - set(local)):
            await self.ask(f"import os\ntry:\n    os.remove(os.path.join({self.remote_folder!r}, {rel!r}))\n"
                           "except OSError:\n    pass\n")
            self.local_seen.pop(rel, None)
            self.remote_seen.pop(rel, None)
        for rel, sig in sorted(local.items()):
            if self.local_seen.get(rel) == sig:
                continue
            data = (workdir / rel).read_bytes()
            for start in range(0, max(len(data), 1), CHUNK):
                chunk = base64.b64encode(data[start:start + CHUNK]).decode()
                await self.ask(_PUT.format(folder=self.remote_folder, rel=rel, mode="ab" if start else "wb", data=chunk))
            self.local_seen[rel] = sig
        self.remote_seen.update(await self._listing())

    async def stage_out(self, workdir: Path) -> None:
        """Bring files the code made or changed in the remote folder back here, and drop what it deleted."""
        if not await self.km.is_alive():
            return
        listing = await self._listing()
        for rel, sig in sorted(listing.items()):
            if self.remote_seen.get(rel) == sig:
                continue
            target = (workdir / rel).resolve()
            if not target.is_relative_to(workdir.resolve()):
                continue  # a name that would leave the folder (a link made remotely): not ours to write
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.tnb-part")
            with open(partial, "wb") as out:
                for start in range(0, max(sig[1], 1), CHUNK):
                    out.write(base64.b64decode(await self.ask(_GET.format(
                        folder=self.remote_folder, rel=rel, start=start, size=CHUNK, mime=MIME), mime=MIME)))
            os.replace(partial, target)
            self.remote_seen[rel] = sig
            stat = target.stat()
            self.local_seen[rel] = (stat.st_mtime_ns, stat.st_size)
        for rel in sorted(set(self.remote_seen) - set(listing)):
            path = workdir / rel
            stat = path.stat() if path.exists() else None
            if stat is not None and self.local_seen.get(rel) == (stat.st_mtime_ns, stat.st_size):
                path.unlink()  # deleted by the code and not changed here since
            self.remote_seen.pop(rel, None)
            self.local_seen.pop(rel, None)

    async def _listing(self) -> dict[str, tuple[int, int]]:
        text = await self.ask(_LIST.format(folder=self.remote_folder, mime=MIME), mime=MIME)
        return {rel: (int(sig[0]), int(sig[1])) for rel, sig in json.loads(base64.b64decode(text)).items()}


# housekeeping code the remote kernel runs; results come back as a display of MIME (not capped like printed text)
_PUT = """import base64 as _b, os as _o
_p = _o.path.join({folder!r}, {rel!r})
_o.makedirs(_o.path.dirname(_p), exist_ok=True)
with open(_p, {mode!r}) as _f:
    _f.write(_b.b64decode({data!r}))
del _b, _o, _p, _f
"""
_GET = """import base64 as _b, os as _o
from IPython.display import publish_display_data as _d
with open(_o.path.join({folder!r}, {rel!r}), 'rb') as _f:
    _f.seek({start})
    _d({{{mime!r}: _b.b64encode(_f.read({size})).decode()}})
del _b, _o, _d, _f
"""
_LIST = """import base64 as _b, json as _j, os as _o
from IPython.display import publish_display_data as _d
def _tnb_list(root):
    found = {{}}
    for top, dirs, files in _o.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith('.')]
        for name in files:
            if name.startswith('.'):
                continue
            path = _o.path.join(top, name)
            try:
                st = _o.stat(path)
            except OSError:
                continue
            found[_o.path.relpath(path, root)] = [st.st_mtime_ns, st.st_size]
    return found
_d({{{mime!r}: _b.b64encode(_j.dumps(_tnb_list({folder!r})).encode()).decode()}})
del _b, _j, _o, _d, _tnb_list
"""
_MAKE_FOLDER = """import os as _o, tempfile as _t
from IPython.display import publish_display_data as _d
_tnb_folder = _t.mkdtemp(prefix='tutor_nb-')
_o.chdir(_tnb_folder)
_d({{{mime!r}: _tnb_folder}})
del _o, _t, _d
"""


class GatewayLauncher:
    """Starts kernels on a Jupyter Kernel Gateway or Enterprise Gateway; the local launcher's face."""

    bwrap = None
    cgroups = False
    warm = None
    cold_reason = None
    users = None  # kernels run on the gateway's machine, isolated as the gateway isolates them
    isolation_problem = None

    def __init__(self, root: Path, url: str, *, token: str | None = None, kernel_name: str = "python3",
                 max_log_chars: int = 100_000, memory_limit_mb: int | None = None) -> None:
        parts = urlsplit(url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SandboxError(f"the gateway URL {url!r} is not an http(s) URL; give e.g. http://gateway:8888")
        self.url = urlunsplit(parts)
        self.root = root
        self.private = root / ".kernels"
        self.token = token if token is not None else (os.environ.get(TOKEN_ENV) or None)
        self.kernel_name = kernel_name
        self.max_log_chars = max_log_chars
        self.memory_limit_mb = memory_limit_mb
        self._http: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"GatewayLauncher({self.url!r}, kernel={self.kernel_name!r})"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"} if self.token else {}

    def ws_url(self, path: str) -> str:
        parts = urlsplit(self.url)
        return urlunsplit((("wss" if parts.scheme == "https" else "ws"), parts.netloc, parts.path + path, "", ""))

    async def request(self, method: str, path: str, *, json: Any = None, timeout: float = 30.0,
                      missing_ok: bool = False) -> Any:
        """One REST call; the answer's JSON (None for 204, or 404 with ``missing_ok``)."""
        if self._http is None:
            self._http = httpx.AsyncClient(headers=self.headers(), timeout=timeout)
        try:
            answer = await self._http.request(method, self.url + path, json=json, timeout=timeout)
        except httpx.HTTPError as exc:
            raise GatewayError(f"the kernel gateway at {self.url} did not answer {method} {path} ({exc!r}); "
                               "check that it runs and that --gateway-url points at it") from exc
        if answer.status_code == 404 and missing_ok:
            return None
        if answer.status_code in (401, 403):
            raise GatewayError(f"the kernel gateway at {self.url} refused the token ({answer.status_code}); give its "
                               f"token with --gateway-token-file or {TOKEN_ENV}")
        if answer.status_code >= 400:
            raise GatewayError(f"the kernel gateway answered {method} {path} with {answer.status_code}: "
                               f"{answer.text[:500]}")
        return answer.json() if answer.content else None

    async def prepare(self) -> None:
        """Check that the gateway answers and offers the kernelspec."""
        self.private.mkdir(parents=True, exist_ok=True, mode=0o700)
        specs = await self.request("GET", "/api/kernelspecs")
        names = sorted((specs or {}).get("kernelspecs", {}))
        if self.kernel_name not in names:
            raise GatewayError(f"the kernel gateway at {self.url} has no kernelspec {self.kernel_name!r} "
                               f"(it has {', '.join(names) or 'none'}); pick one with --gateway-kernel")

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def new(self) -> RemoteKernel:
        folder = self.private / uuid.uuid4().hex[:10]
        folder.mkdir(mode=0o700)
        km = GatewayKernelManager(self)
        return RemoteKernel(km=km, kc=km.client(), folder=folder, cgroup=None)  # type: ignore[arg-type]

    async def boot(self, kernel: Kernel) -> None:
        assert isinstance(kernel, RemoteKernel)
        (kernel.folder / "kernel.log").touch()
        # only KERNEL_* variables reach a kernel through a gateway; none of this server's environment is sent.
        # Enterprise Gateway's pod template makes KERNEL_MEMORY_LIMIT the kernel pod's memory limit
        env = {"KERNEL_USERNAME": "tutor_nb"}
        if self.memory_limit_mb:
            env["KERNEL_MEMORY_LIMIT"] = f"{self.memory_limit_mb}Mi"
        await kernel.km.start_kernel(env=env)  # type: ignore[call-arg]
        kernel.kc.start_channels()
        await wait_until_ready(kernel.kc, kernel.km.is_alive, START_TIMEOUT)
        await kernel.quiet(kernel_boot.setup_code(output_cap=self.max_log_chars + 1000))
        kernel.remote_folder = await kernel.ask(_MAKE_FOLDER.format(mime=MIME), mime=MIME)

    async def release(self, kernel: Kernel) -> None:
        """Nothing of a remote kernel's runs here once it is shut down."""

    def cleanup(self, kernel: Kernel) -> None:
        shutil.rmtree(kernel.folder, ignore_errors=True)
