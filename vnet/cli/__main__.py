"""``python -m vnet.cli``: the ``vnet`` command."""

import sys

from vnet.cli import main

sys.exit(main())
