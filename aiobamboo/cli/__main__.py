"""``python -m aiobamboo.cli``: the aiobamboo command."""

from __future__ import annotations

import sys

from . import main

sys.exit(main())
