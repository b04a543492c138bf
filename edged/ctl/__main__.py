from __future__ import annotations

import sys

from edged.ctl.main import main

sys.exit(main())
