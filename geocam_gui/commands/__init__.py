"""Subcommands of the headless ``geocam`` command.

Each module here defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
They import only the core (never Qt). Errors a user can cause are raised as
``GeoCamError``; ``geocam_gui.cli`` prints them and exits 1 (2 for ``BadArgument``).
"""

# Order in which they appear in ``geocam --help``.
MODULES = ("demo_data", "index", "train", "eval", "export", "analyze", "units", "runs", "doctor")
