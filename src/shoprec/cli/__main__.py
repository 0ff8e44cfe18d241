"""`python -m shoprec.cli` (and `torchrun ... -m shoprec.cli train ...`)."""

import sys

from shoprec.cli.main import main

sys.exit(main())
