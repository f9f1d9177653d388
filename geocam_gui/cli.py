"""The headless ``geocam`` command. Imports no Qt: everything here runs on a server."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from geocam_gui import __version__
from geocam_gui.commands import MODULES
from geocam_gui.core.errors import BadArgument, Cancelled, GeoCamError, os_error_sentence


class _Parser(argparse.ArgumentParser):
    """argparse prints usage and exits 2 on bad arguments; we keep that, with one sentence."""

    def error(self, message: str):  # pragma: no cover - argparse path is exercised via main()
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _commands():
    found = []
    for name in MODULES:
        try:
            found.append(importlib.import_module(f"geocam_gui.commands.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"geocam_gui.commands.{name}":
                raise
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="geocam",
        description="GeoCAM: train city classifiers and explain them with Grad-CAM, headless.",
    )
    parser.add_argument("--version", action="version", version=f"geocam {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in _commands():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # file names that are not UTF-8 print as their bytes
        try:
            stream.reconfigure(errors="surrogateescape")
        except (AttributeError, ValueError, OSError):
            pass
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    from geocam_gui.core.logs import setup_logging

    log = setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    if args.verbose:
        for h in log.handlers:
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                h.setLevel(logging.INFO)
    try:
        return int(args._run(args) or 0)
    except BadArgument as exc:
        print(f"geocam {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Cancelled as exc:
        print(f"geocam {args.command}: cancelled: {exc}", file=sys.stderr)
        return 130
    except GeoCamError as exc:
        print(f"geocam {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"geocam {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a full disk, a read-only folder, no permission: a sentence, never a traceback
        print(f"geocam {args.command}: error: {os_error_sentence(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # python -m geocam_gui.cli (torchrun uses this)
    raise SystemExit(main())
