"""Start the HierTune studio: ``python app.py [--host H] [--port P] [--workspace DIR] [--share]
[--auth user:pass]``.

Everything else lives in `webapp/` (the Gradio UI) and `hiercore/` (the library). The
workspace (SQLite database, imported images, runs) defaults to ``$HIERTUNE_WORKSPACE`` or
``./workspace``. On Hugging Face Spaces this file is the ``app_file``.
"""

from __future__ import annotations

import argparse
import os
import sys

from webapp.app import launch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="HierTune studio")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    p.add_argument(
        "--workspace",
        default=os.environ.get("HIERTUNE_WORKSPACE", "workspace"),
        help="folder for the database, imported images and runs",
    )
    p.add_argument("--share", action="store_true", help="open a public gradio.live link")
    p.add_argument("--auth", default=os.environ.get("HIERTUNE_AUTH"), help="user:pass login")
    p.add_argument(
        "--no-demo",
        action="store_true",
        help="do not create the demo project in an empty workspace",
    )
    args = p.parse_args(argv)
    if args.auth and ":" not in args.auth:
        p.error("--auth must look like user:pass")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
