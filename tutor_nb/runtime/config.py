"""Settings of one runtime, with the defaults a learner's laptop wants."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RuntimeStartError
from .learners import Learners

#: environment variable holding the access token for a non-loopback bind
TOKEN_ENV = "TUTOR_NB_TOKEN"


def default_data_dir() -> Path:
    """Where assistants, threads and files are kept between sessions."""
    from platformdirs import user_data_dir

    return Path(os.environ.get("TUTOR_NB_DATA_DIR") or user_data_dir("tutor_nb", appauthor=False))


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
    token: str | None = None
    exec_timeout: float = 60.0
    idle_timeout: float = 900.0
    pool_size: int | None = None  # warm kernels kept for new threads; None: as many as recent demand asks for
    fork_kernels: bool = True  # False: every kernel starts as its own process (slower, no shared pages)
    gateway_url: str | None = None  # kernels on a Jupyter Kernel Gateway / Enterprise Gateway instead of here
    gateway_token: str | None = None  # its token (default: TUTOR_NB_GATEWAY_TOKEN)
    gateway_kernel: str = "python3"  # the gateway's kernelspec
    memory_limit_mb: int | None = 2048
    poll_after_ms: int = 25
    max_body_mb: int = 64
    #: an OpenAI-compatible /v1/embeddings endpoint for file search (its key: TUTOR_NB_EMBEDDINGS_API_KEY)
    embeddings_base_url: str | None = None
    embeddings_model: str | None = None
    #: one token per learner (lines of ``NAME TOKEN``): each sees only what they made; the teacher's token sees all
    tokens_file: Path | None = None
    runs_per_minute: int | None = None  # runs one learner may start in a minute (None: no limit)
    learners: Learners | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser()
        if self.embeddings_base_url and not self.embeddings_model:
            raise RuntimeStartError("An embeddings endpoint needs its model too: pass --embeddings-model NAME "
                                    "(for example text-embedding-3-small, or nomic-embed-text on Ollama).")
        if self.pool_size is not None and self.pool_size < 0:
            raise RuntimeStartError(f"pool_size must be 0 or more (got {self.pool_size}); 0 starts kernels on demand.")
        if self.token is None:
            self.token = os.environ.get(TOKEN_ENV) or None
        if self.tokens_file is not None:
            self.learners = Learners.load(Path(self.tokens_file), teacher_token=self.token,
                                          runs_per_minute=self.runs_per_minute)
        if not self.is_loopback and not self.token and not self.learners:
            raise RuntimeStartError(
                f"Refusing to serve on {self.host} without a token: anyone who can reach it could run "
                f"code on this machine. Pass --token SECRET (or set {TOKEN_ENV}) and give clients that "
                "secret as their api_key, or bind 127.0.0.1."
            )

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False
