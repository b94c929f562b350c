"""``python -m volrob`` (and ``torchrun ... -m volrob``): the ``volrob`` command."""

import sys

from volrob.cli.main import main

sys.exit(main())
