"""Entry script of the PyInstaller bundle: the same ``geocam_gui.app:main`` as ``geocam-gui``.

PyInstaller needs a script, not an entry point. ``freeze_support`` lets multiprocessing
(data-loader workers on Windows and macOS, which spawn) re-enter a frozen executable.
"""

import multiprocessing

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from geocam_gui.app import main

    raise SystemExit(main())
