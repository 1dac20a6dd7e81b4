"""``python -m MobileUViTSegmentLib``: the command line, usable from Slicer's own Python too."""

import sys

from .cli import main

sys.exit(main())
