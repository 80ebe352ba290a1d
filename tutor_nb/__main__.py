"""Command line: ``python -m tutor_nb walkthrough`` and ``python -m tutor_nb serve``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import TutorNBError


def _model_options(parser: argparse.ArgumentParser, default_backend: str | None) -> None:
    parser.add_argument("--backend", choices=["replay", "chat"], default=default_backend,
                        help="where model turns come from: recorded cassettes (offline) or a Chat Completions server")
    parser.add_argument("--model-base-url", help="an OpenAI-compatible endpoint, e.g. http://127.0.0.1:11434/v1 for Ollama")
    parser.add_argument("--model-api-key", help="key for that endpoint (default: OPENAI_API_KEY when it is OpenAI's)")
    parser.add_argument("--model", help="model name to use instead of the assistant's")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tutor_nb", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    walk = sub.add_parser("walkthrough", help="run the code-interpreter walkthrough in this terminal (offline by default)")
    _model_options(walk, None)

    serve = sub.add_parser("serve", help="serve OpenAI's Assistants API on this machine")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    serve.add_argument("--data-dir", type=Path, help="where assistants, threads and files are kept")
    _model_options(serve, "replay")
    serve.add_argument("--record", type=Path, help="with --backend chat: save every model turn to this cassette")
    serve.add_argument("--cassettes", type=Path, action="append", default=[], help="extra cassette file or folder (repeatable)")
    serve.add_argument("--token", help="required as the clients' api_key; needed to bind beyond 127.0.0.1")
    serve.add_argument("--exec-timeout", type=float, default=60.0, help="seconds one code execution may take")
    serve.add_argument("--idle-timeout", type=float, default=900.0, help="seconds before an idle thread's kernel stops")
    serve.add_argument("--cold-kernels", action="store_true",
                       help="start every kernel as a process of its own instead of forking a warm template")
    serve.add_argument("--tokens", type=Path, metavar="FILE",
                       help="one token per learner ('NAME TOKEN' lines, # comments; chmod 600): each learner sees "
                       "only what they made, the teacher's token sees all")
    serve.add_argument("--runs-per-minute", type=int, help="runs one learner may start in a minute (default: no limit)")
    serve.add_argument("--gateway-url", help="start every thread's kernel on this Jupyter Kernel Gateway or "
                       "Enterprise Gateway (e.g. http://gateway:8888) instead of on this machine")
    serve.add_argument("--gateway-token-file", type=Path,
                       help="a file holding the gateway's token (default: TUTOR_NB_GATEWAY_TOKEN)")
    serve.add_argument("--gateway-kernel", default="python3", help="the gateway's kernelspec to start (default python3)")
    serve.add_argument("--pool-size", type=int, default=None,
                       help="keep this many kernels started for new threads (default: grows and shrinks with demand)")
    serve.add_argument("--memory-limit-mb", type=int, default=2048, help="memory one kernel may use (0: no limit)")
    serve.add_argument("--embeddings-base-url", help="an OpenAI-compatible /v1/embeddings endpoint: file search "
                       "ranks with its vectors as well as BM25 (key: TUTOR_NB_EMBEDDINGS_API_KEY)")
    serve.add_argument("--embeddings-model", help="the embeddings model at that endpoint")
    serve.add_argument("--replay-delay", type=float, default=0.01, help="seconds between replayed pieces of text")
    return parser


def _read_secret(path: Path | None) -> str | None:
    """A token from a file (never from the command line, where other users could see it)."""
    if path is None:
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise TutorNBError(f"cannot read the token file {path}: {exc.strerror}") from exc
    if not token:
        raise TutorNBError(f"the token file {path} is empty; put the token on its first line")
    return token


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            from .runtime.config import Settings
            from .runtime.server import serve

            fields = dict(host=args.host, port=args.port, backend=args.backend, model_base_url=args.model_base_url,
                          model_api_key=args.model_api_key, model=args.model, record=args.record,
                          cassettes=args.cassettes, token=args.token, exec_timeout=args.exec_timeout,
                          idle_timeout=args.idle_timeout, replay_delay=args.replay_delay,
                          pool_size=args.pool_size, memory_limit_mb=args.memory_limit_mb or None,
                          embeddings_base_url=args.embeddings_base_url, embeddings_model=args.embeddings_model,
                          fork_kernels=not args.cold_kernels, gateway_url=args.gateway_url,
                          gateway_token=_read_secret(args.gateway_token_file), gateway_kernel=args.gateway_kernel,
                          tokens_file=args.tokens, runs_per_minute=args.runs_per_minute)
            if args.data_dir is not None:
                fields["data_dir"] = args.data_dir
            try:
                serve(Settings(**fields))
            except KeyboardInterrupt:
                pass
            return 0
        from .walkthrough import main as walkthrough

        return walkthrough(backend=args.backend, model_base_url=args.model_base_url,
                           model_api_key=args.model_api_key, model=args.model)
    except TutorNBError as exc:
        print(f"tutor_nb: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
