"""``python -m hotspot_cli …`` is ``hotspot …``."""

import sys

from hotspot_cli.main import main

sys.exit(main())
