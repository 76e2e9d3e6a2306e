"""``python -m modelgen`` is the ``modelgen`` command."""

import sys

from modelgen.cli import main

sys.exit(main())
