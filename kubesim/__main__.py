"""``python -m kubesim``: run a simulator in the foreground (see ``kubesim.runtime.main``)."""

from kubesim.runtime import main

raise SystemExit(main())
