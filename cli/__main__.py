"""``python -m cli``: the ``reconciler`` command, for a source tree with no script on PATH."""

from cli.main import main

raise SystemExit(main())
