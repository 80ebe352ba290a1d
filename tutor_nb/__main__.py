"""Command line: python -m tutor_nb walkthrough, and python -m tutor_nb serve."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import TutorNBError

SECRETS = """\
secrets (never on the command line, where any local user can read them with ps):
  TUTOR_NB_MODEL_API_KEY   the model server's API key (or --model-api-key-file FILE);
                           OPENAI_API_KEY is used for OpenAI itself
  TUTOR_NB_TOKEN           the token clients give as api_key (or --token-file FILE); without
                           either, serve makes one, prints it as api_key=... and keeps it in
                           server.json in the data folder (mode 0600), where
                           tutor_nb.connect(base_url=...) finds it
"""


class _Help(argparse.RawDescriptionHelpFormatter):
    """Every option's default in its help (plain text), except the ones that have none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default" in text or action.default in (None, False, [], argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: {action.default})"


def _model_options(parser: argparse.ArgumentParser, default_backend: str | None) -> None:
    parser.add_argument("--backend", choices=["replay", "chat"], default=default_backend,
                        help="where model turns come from: recorded cassettes (replay, offline) or a Chat "
                             "Completions server (chat)" + ("" if default_backend else
                                                            " (default: chat when an API key is found, else replay)"))
    parser.add_argument("--model-base-url", metavar="URL",
                        help="an OpenAI-compatible endpoint, e.g. http://127.0.0.1:11434/v1 for Ollama "
                             "(default: OpenAI's API)")
    parser.add_argument("--model-api-key-file", type=Path, metavar="FILE",
                        help="file holding that endpoint's key, readable by you only (default: "
                             "TUTOR_NB_MODEL_API_KEY, or OPENAI_API_KEY for OpenAI)")
    parser.add_argument("--model", help="model name to use instead of the assistant's (default: the assistant's)")
    parser.add_argument("--model-api-key", help=argparse.SUPPRESS)  # removed: refused without echoing the key


def _data_dir_default() -> str:
    from .runtime.config import default_data_dir

    return str(default_data_dir())


def build_parser() -> argparse.ArgumentParser:
    # no abbreviations: --model-api-key must never be taken for --model-api-key-file (and the key for a path)
    parser = argparse.ArgumentParser(prog="python -m tutor_nb", description=__doc__, formatter_class=_Help,
                                     allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)

    walk = sub.add_parser("walkthrough", formatter_class=_Help, epilog=SECRETS, allow_abbrev=False,
                          help="run the code-interpreter walkthrough in this terminal (offline by default)",
                          description="Run the code-interpreter walkthrough in this terminal (offline by default).")
    _model_options(walk, None)

    from .runtime.limits import default_max_kernels

    serve = sub.add_parser(
        "serve", formatter_class=_Help, epilog=SECRETS, allow_abbrev=False,
        help="serve OpenAI's Assistants API on this machine",
        description="Serve OpenAI's Assistants API on this machine, with a Jupyter kernel per thread as the "
                    "code interpreter.\n\nData folder (assistants, threads, files, the token file): "
                    f"{_data_dir_default()}\n(set TUTOR_NB_DATA_DIR or --data-dir to change it)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on; beyond loopback (0.0.0.0, a LAN address) a token from "
                            "TUTOR_NB_TOKEN or --token-file is required and any Host name is served")
    serve.add_argument("--port", type=int, default=8765, help="port to listen on; 0 picks a free one")
    serve.add_argument("--data-dir", type=Path, metavar="DIR", help="where assistants, threads and files are kept "
                       f"(default: {_data_dir_default()})")
    _model_options(serve, "replay")
    serve.add_argument("--record", type=Path, metavar="FILE",
                       help="with --backend chat: save every model turn to this cassette")
    serve.add_argument("--cassettes", type=Path, action="append", default=[], metavar="PATH",
                       help="extra cassette file or folder for --backend replay (repeatable; default: the "
                            "bundled ones)")
    serve.add_argument("--token-file", type=Path, metavar="FILE",
                       help="file holding the token clients must give as api_key, readable by you only "
                            "(default: TUTOR_NB_TOKEN, else a new token printed at start)")
    serve.add_argument("--token", help="the token itself; avoid it: other local users can read a command line")
    serve.add_argument("--no-token", action="store_true",
                       help="serve loopback without a token (any local user can then use it; the Host, Origin "
                            "and JSON checks that stop web pages still apply)")
    serve.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                       help="a Host name to serve besides localhost, 127.0.0.1 and [::1] (repeatable)")
    serve.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                       help="a web origin (http://host:port) whose pages may call the API (repeatable; "
                            "default: the runtime's own origin only)")
    serve.add_argument("--exec-timeout", type=float, default=60.0, metavar="SECONDS",
                       help="seconds one code execution may take")
    serve.add_argument("--idle-timeout", type=float, default=900.0, metavar="SECONDS",
                       help="seconds before an idle thread's kernel stops")
    serve.add_argument("--cold-kernels", action="store_true",
                       help="start every kernel as a process of its own instead of forking a warm template")
    serve.add_argument("--tokens", type=Path, metavar="FILE",
                       help="one token per learner ('NAME TOKEN' lines, # comments; chmod 600): each learner sees "
                            "only what they made, the teacher's token sees all")
    serve.add_argument("--runs-per-minute", type=int, metavar="N",
                       help="runs one learner may start in a minute (default: no limit)")
    serve.add_argument("--kernels-per-learner", type=int, metavar="N",
                       help="kernels one learner may hold at once; a new thread takes over their longest-idle "
                            "one's (default: no limit)")
    serve.add_argument("--gateway-url", metavar="URL",
                       help="start every thread's kernel on this Jupyter Kernel Gateway or Enterprise Gateway (e.g. "
                            "http://gateway:8888) instead of on this machine (default: kernels run here)")
    serve.add_argument("--gateway-token-file", type=Path, metavar="FILE",
                       help="a file holding the gateway's token, readable by you only (default: "
                            "TUTOR_NB_GATEWAY_TOKEN)")
    serve.add_argument("--gateway-kernel", default="python3", metavar="NAME", help="the gateway's kernelspec to start")
    serve.add_argument("--pool-size", type=int, default=None, metavar="N",
                       help="keep this many kernels started for new threads (default: grows and shrinks with demand)")
    serve.add_argument("--memory-limit-mb", type=int, default=2048, metavar="MB",
                       help="memory one kernel may use (0: no limit)")
    serve.add_argument("--max-kernels", type=int, metavar="N",
                       help="kernels running at once; past it the idle one used longest ago is shut down "
                            f"(default: what memory holds at 150 MB a kernel, at least 4: "
                            f"{default_max_kernels(2048)} here)")
    serve.add_argument("--max-body-mb", type=int, default=64, metavar="MB", help="largest request body (uploads)")
    serve.add_argument("--embeddings-base-url", metavar="URL",
                       help="an OpenAI-compatible /v1/embeddings endpoint: file search ranks with its vectors as "
                            "well as BM25 (key: TUTOR_NB_EMBEDDINGS_API_KEY; default: BM25 only)")
    serve.add_argument("--embeddings-model", metavar="MODEL",
                       help="the embeddings model at that endpoint (required with --embeddings-base-url)")
    serve.add_argument("--replay-delay", type=float, default=0.01, metavar="SECONDS",
                       help="seconds between replayed pieces of text")
    return parser


def _model_api_key(args: argparse.Namespace) -> str | None:
    from .runtime.config import MODEL_KEY_ENV, read_secret_file

    if args.model_api_key is not None:
        raise TutorNBError(f"--model-api-key was removed: every local user can read a command line (ps). Put the "
                           f"key in {MODEL_KEY_ENV}, or in a file only you can read and pass --model-api-key-file FILE.")
    if args.model_api_key_file is not None:
        return read_secret_file(args.model_api_key_file, "model API key")
    return os.environ.get(MODEL_KEY_ENV) or None


def _gateway_token(args: argparse.Namespace) -> str | None:
    from .runtime.config import read_secret_file

    if args.gateway_token_file is not None:
        return read_secret_file(args.gateway_token_file, "gateway token")
    return None


def _token(args: argparse.Namespace) -> str | None:
    from .runtime.config import read_secret_file

    given = [name for name, value in (("--token", args.token), ("--token-file", args.token_file),
                                      ("--no-token", args.no_token)) if value]
    if len(given) > 1:
        raise TutorNBError(f"Use one of {' and '.join(given)}, not both.")
    if args.token is not None:
        print("tutor_nb: warning: --token puts the token on the command line, where every local user can read "
              "it (ps). Use TUTOR_NB_TOKEN or --token-file FILE instead.", file=sys.stderr)
        return args.token
    if args.token_file is not None:
        return read_secret_file(args.token_file, "token")
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            from .runtime.config import Settings
            from .runtime.server import serve

            fields = dict(host=args.host, port=args.port, backend=args.backend, model_base_url=args.model_base_url,
                          model_api_key=_model_api_key(args), model=args.model, record=args.record,
                          cassettes=args.cassettes, token=_token(args), require_token=not args.no_token,
                          allow_hosts=args.allow_host, allow_origins=args.allow_origin,
                          exec_timeout=args.exec_timeout, idle_timeout=args.idle_timeout,
                          replay_delay=args.replay_delay, pool_size=args.pool_size,
                          memory_limit_mb=args.memory_limit_mb or None, max_kernels=args.max_kernels,
                          max_body_mb=args.max_body_mb, embeddings_base_url=args.embeddings_base_url,
                          embeddings_model=args.embeddings_model,
                          fork_kernels=not args.cold_kernels, gateway_url=args.gateway_url,
                          gateway_token=_gateway_token(args), gateway_kernel=args.gateway_kernel,
                          tokens_file=args.tokens, runs_per_minute=args.runs_per_minute,
                          kernels_per_learner=args.kernels_per_learner)
            if args.data_dir is not None:
                fields["data_dir"] = args.data_dir
            try:
                serve(Settings(**fields))
            except KeyboardInterrupt:
                pass
            return 0
        from .walkthrough import main as walkthrough

        return walkthrough(backend=args.backend, model_base_url=args.model_base_url,
                           model_api_key=_model_api_key(args), model=args.model)
    except TutorNBError as exc:
        print(f"tutor_nb: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
