"""Settings of one runtime, with the defaults a learner's laptop wants, and where its secrets come from.

A runtime always has a token unless it is told not to (``require_token=False``, loopback only):
other local users, and web pages, can reach a loopback port too. Secrets never come from a
command line (any local user can read one with ``ps``): they come from the environment or from
files only their owner can read.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import RuntimeStartError
from .learners import Learners

#: environment variable holding the runtime's access token
TOKEN_ENV = "TUTOR_NB_TOKEN"
#: environment variable holding the model server's API key (OPENAI_API_KEY is read for OpenAI itself)
MODEL_KEY_ENV = "TUTOR_NB_MODEL_API_KEY"
#: the file in the data folder where ``serve`` leaves its URL and token for local clients (mode 0600)
SERVER_FILE = "server.json"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def default_data_dir() -> Path:
    """Where assistants, threads and files are kept between sessions."""
    from platformdirs import user_data_dir

    return Path(os.environ.get("TUTOR_NB_DATA_DIR") or user_data_dir("tutor_nb", appauthor=False))


def new_token() -> str:
    return secrets.token_urlsafe(24)


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8765
    data_dir: Path = field(default_factory=default_data_dir)
    backend: str = "replay"
    model_base_url: str | None = None
    model_api_key: str | None = None
    model: str | None = None
    record: Path | None = None
    cassettes: list[Path] = field(default_factory=list)
    replay_delay: float = 0.0
    #: clients' api_key; None: TUTOR_NB_TOKEN, else a new random one (unless require_token is False)
    token: str | None = None
    require_token: bool = True
    #: Host names served besides the loopback ones (a name this machine is reached by)
    allow_hosts: list[str] = field(default_factory=list)
    #: web origins whose pages may call the API besides the runtime's own (``http://host:port``)
    allow_origins: list[str] = field(default_factory=list)
    exec_timeout: float = 60.0
    idle_timeout: float = 900.0
    pool_size: int | None = None  # warm kernels kept for new threads; None: as many as recent demand asks for
    fork_kernels: bool = True  # False: every kernel starts as its own process (slower, no shared pages)
    gateway_url: str | None = None  # kernels on a Jupyter Kernel Gateway / Enterprise Gateway instead of here
    gateway_token: str | None = None  # its token (default: TUTOR_NB_GATEWAY_TOKEN)
    gateway_kernel: str = "python3"  # the gateway's kernelspec
    memory_limit_mb: int | None = 2048
    #: kernels running at once; None: as many as the memory holds at memory_limit_mb (at least 4)
    max_kernels: int | None = None
    poll_after_ms: int = 25
    max_body_mb: int = 64
    #: an OpenAI-compatible /v1/embeddings endpoint for file search (its key: TUTOR_NB_EMBEDDINGS_API_KEY)
    embeddings_base_url: str | None = None
    embeddings_model: str | None = None
    #: one token per learner (lines of ``NAME TOKEN``): each sees only what they made; the teacher's token sees all
    tokens_file: Path | None = None
    runs_per_minute: int | None = None  # runs one learner may start in a minute (None: no limit)
    kernels_per_learner: int | None = None  # kernels one learner may hold; a new thread takes their idlest one's
    learners: Learners | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser()
        if self.embeddings_base_url and not self.embeddings_model:
            raise RuntimeStartError("An embeddings endpoint needs its model too: pass --embeddings-model NAME "
                                    "(for example text-embedding-3-small, or nomic-embed-text on Ollama).")
        if self.pool_size is not None and self.pool_size < 0:
            raise RuntimeStartError(f"pool_size must be 0 or more (got {self.pool_size}); 0 starts kernels on demand.")
        if self.max_kernels is not None and self.max_kernels < 1:
            raise RuntimeStartError(f"max_kernels must be 1 or more (got {self.max_kernels}).")
        self.token_generated = False
        if self.token is None:
            self.token = os.environ.get(TOKEN_ENV) or None
        if self.tokens_file is not None:
            self.learners = Learners.load(Path(self.tokens_file), teacher_token=self.token,
                                          runs_per_minute=self.runs_per_minute)
        if not self.is_loopback and not ((self.token or self.learners) and self.require_token):
            raise RuntimeStartError(
                f"Refusing to serve on {self.host} without a token: anyone who can reach it could run "
                f"code on this machine. Set {TOKEN_ENV} or pass --token-file FILE (a file only you can read) "
                "and give clients that secret as their api_key, or bind 127.0.0.1."
            )
        if not self.require_token:
            self.token = None
        elif not self.token:
            self.token, self.token_generated = new_token(), True

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)


def is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_secret_file(path: Path | str, what: str) -> str:
    """The secret in ``path`` (first line, stripped), refusing a file other users can read.

    ``what`` names the secret in error messages ("token", "model API key")."""
    path = Path(path).expanduser()
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RuntimeStartError(f"The {what} file {path} does not exist. Create it with the {what} on one line, "
                                f"readable by you only (chmod 600).") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise RuntimeStartError(f"Cannot read the {what} file {path} ({reason}).") from None
    if not stat.S_ISREG(st.st_mode):
        raise RuntimeStartError(f"The {what} file {path} is not a regular file.")
    if st.st_mode & 0o077:
        raise RuntimeStartError(f"The {what} file {path} can be read by other users (mode "
                                f"{stat.filemode(st.st_mode)}). Run: chmod 600 {path}")
    secret = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not secret:
        raise RuntimeStartError(f"The {what} file {path} is empty; put the {what} on its first line.")
    return secret


def write_server_file(data_dir: Path, base_url: str, token: str | None) -> Path:
    """Leave the URL and token where local clients of this user find them (``connect(base_url=...)``)."""
    path = Path(data_dir) / SERVER_FILE
    temporary = path.with_name(f".{SERVER_FILE}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"base_url": base_url, "token": token, "pid": os.getpid()}, f)
    os.replace(temporary, path)
    return path


def remove_server_file(data_dir: Path) -> None:
    path = Path(data_dir) / SERVER_FILE
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


#: base URL -> token of the runtimes this process serves (``start()``), for connect(base_url=...)
IN_PROCESS_TOKENS: dict[str, str] = {}


def local_token(base_url: str, data_dir: Path | None = None) -> str | None:
    """The token of the runtime at ``base_url``: one this process serves, or one ``serve`` started on this
    machine that left its token where this user can read it."""
    parts = urlsplit(base_url)
    if not is_loopback_host(parts.hostname or ""):
        return None
    for url, token in IN_PROCESS_TOKENS.items():
        if urlsplit(url).port == parts.port:
            return token
    try:
        info = json.loads((Path(data_dir or default_data_dir()) / SERVER_FILE).read_text(encoding="utf-8"))
        served = urlsplit(info["base_url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if served.port == parts.port and is_loopback_host(served.hostname or ""):
        return info.get("token")
    return None
