"""Start the HierTune studio: ``python app.py [--host H] [--port P] [--workspace DIR] [--share]
[--auth user:pass]`` (the same as ``hiertune studio ...``).

Everything else lives in `webapp/` (the Gradio UI) and `hiercore/` (the library). The
workspace (SQLite database, imported images, runs) defaults to ``$HIERTUNE_WORKSPACE`` or
``./workspace``. On Hugging Face Spaces this file is the ``app_file``.
"""

from __future__ import annotations

import argparse
import sys

from webapp.main import serve, studio_parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return studio_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return serve(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
