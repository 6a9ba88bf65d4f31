from __future__ import annotations

import sys

from postback.cli import main

sys.exit(main())
