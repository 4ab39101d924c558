"""`python -m gigq_cli` runs the `gigq` command."""

from __future__ import annotations

import os
import sys

from gigq_cli.main import main

if __name__ == "__main__":
    # `python -m` put the current directory first on sys.path; like the console script,
    # keep it last, so a module there cannot shadow one that GigQ imports later.
    try:
        if sys.path and sys.path[0] == os.getcwd():
            sys.path.append(sys.path.pop(0))
    except OSError:  # the directory was removed
        pass
    main()
