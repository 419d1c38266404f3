"""The ``hiertune`` command: ``hiertune studio [...]`` serves the studio (as ``python app.py``
does), ``hiertune <command>`` is the library's CLI (``python -m hiercore <command>``).

Gradio is imported only by ``studio``, so ``hiertune --help`` and the CLI commands start
as fast as ``python -m hiercore``.
"""

from __future__ import annotations

import argparse
import os
import sys


def add_studio_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    p.add_argument(
        "--workspace",
        default=os.environ.get("HIERTUNE_WORKSPACE", "workspace"),
        help="folder for the database, imported images and runs",
    )
    p.add_argument("--share", action="store_true", help="open a public gradio.live link")
    p.add_argument(
        "--auth", type=_login, default=os.environ.get("HIERTUNE_AUTH"), help="user:pass login"
    )
    p.add_argument(
        "--no-demo",
        action="store_true",
        help="do not create the demo project in an empty workspace",
    )


def _login(text: str) -> str:
    if ":" not in text:
        raise argparse.ArgumentTypeError("it must look like user:pass")
    return text


def serve(args: argparse.Namespace) -> int:
    """Open the workspace and serve the studio until interrupted."""
    from webapp.app import launch

    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    launch(
        args.workspace,
        host=args.host,
        port=args.port,
        share=args.share,
        auth=auth,
        open_demo=not args.no_demo,
    )
    return 0


def studio_parser(prog: str = "python app.py") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="HierTune studio")
    add_studio_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    from hiercore.cli import build_parser, run

    return run(build_parser("hiertune", extra_commands=[_add_studio_command]), argv)


def _add_studio_command(sub) -> None:
    p = sub.add_parser("studio", help="serve the studio (as python app.py does)")
    add_studio_args(p)
    p.set_defaults(func=serve)


if __name__ == "__main__":
    sys.exit(main())
