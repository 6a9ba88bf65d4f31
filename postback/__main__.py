from __future__ import annotations

import sys

from postback.cli.main import main

sys.exit(main())
