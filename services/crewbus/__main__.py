"""`python -m crewbus` is the `crewbus` command."""

import sys

from crewbus.entry import main

sys.exit(main())
