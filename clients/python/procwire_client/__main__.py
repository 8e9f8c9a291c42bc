"""``python -m procwire_client`` is the ``procwire`` command."""

import sys

from procwire_client.cli import main

sys.exit(main())
