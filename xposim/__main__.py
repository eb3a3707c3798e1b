"""``python -m xposim`` is the ``xposim`` command."""
from xposim.cli import main

raise SystemExit(main())
