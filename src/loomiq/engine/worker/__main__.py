"""``python -m loomiq.engine.worker``: run a worker process (`loomiq.engine.worker.main`).

A ``__main__`` module of its own, so that the command runs the package's `main` as imported (the
package ``loomiq.engine`` imports `Worker` from it) rather than executing the module a second time."""

import sys

from . import main

sys.exit(main())
