"""``python -m geocam_gui`` starts the GUI."""

from geocam_gui.app import main

raise SystemExit(main())
