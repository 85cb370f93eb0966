"""``python -m hyper.cli``: the admin command; the agent and its workers start through here (hyper/cli/lean.py)."""

import sys

from hyper.cli.lean import run_lean

code = run_lean(sys.argv[1:])
if code is None:
    from hyper.cli.app import main

    main()
else:
    sys.exit(code)
