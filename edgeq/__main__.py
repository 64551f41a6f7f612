"""``python -m edgeq``."""

from edgeq.cli.app import main

main()
