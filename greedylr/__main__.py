"""``python -m greedylr``: the ``greedylr`` command."""

import sys

from greedylr.cli import main


sys.exit(main())
