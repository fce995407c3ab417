"""python -m symbp"""

import sys

from symbp.cli import main

sys.exit(main())
