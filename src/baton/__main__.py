"""`python -m baton` runs the CLI."""

from baton.cli.main import main

main()
