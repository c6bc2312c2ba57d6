"""The ``reconciler`` command line: the entry points of the platform.

Everything a person or a script runs starts here: the one-shot commands that need no
Redis (``cli.local``), the admin commands of a running installation (``cli.admin``), the
components and ``up`` (``cli.components``, ``cli.supervisor``) and the demo
(``cli.demo``).  The library below (``reconciler``) never imports this package.
"""
