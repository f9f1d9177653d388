"""``python -m geocam_gui`` starts the GUI."""

from geocam_gui.app import main

if __name__ == "__main__":  # guarded: spawned training processes import this module too
    raise SystemExit(main())
