"""``python -m uplift`` runs the command line."""

from uplift.cli import main

main()
