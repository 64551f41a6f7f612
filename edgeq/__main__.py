"""``python -m edgeq``."""

from edgeq.cli import main

main()
