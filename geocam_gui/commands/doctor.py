"""``geocam doctor``: check Qt's platform plugins, torch/CUDA, disk space and writable folders."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

NAME = "doctor"
HELP = ("check that this machine can run GeoCAM: Qt platform plugins (with the command that installs "
        "missing system libraries), torch/CUDA, disk space and writable folders; exits 1 when something "
        "needed is missing")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")


def run(args: argparse.Namespace) -> int:
    from geocam_gui.core.doctor import report_lines, run_checks

    checks = run_checks()
    if args.json:
        print(json.dumps([asdict(c) for c in checks], indent=1))
    else:
        print("\n".join(report_lines(checks)))
    return 1 if any(c.status == "fail" for c in checks) else 0
