"""``python -m neuralnp``: the same as the ``neuralnp`` command."""

from .cli import main

raise SystemExit(main())
