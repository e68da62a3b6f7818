"""`python -m pgtool`."""

import sys

from pgtool.cli.entry import main

sys.exit(main())
