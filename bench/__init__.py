"""The developers' measurements, run from the checkout as `python -m bench.NAME` (not installed).
May import trainables, search_spaces, results and orchestrator; never ray at import (a GPU machine may lack it)."""

