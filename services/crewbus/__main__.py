"""`python -m crewbus` is the `crewbus` command."""

import sys

from crewbus.cli import main

sys.exit(main())
