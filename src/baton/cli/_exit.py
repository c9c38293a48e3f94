"""Exit codes that mean something to scripts (the README has the table; `_client_cli.exit_code` maps errors).

A module of its own, without typer, so that `baton serve` (cli/serve.py) uses them without loading the CLI.
"""

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_NOT_FOUND = 4
EXIT_AUTH = 5
EXIT_CONFLICT = 6
EXIT_TASK_FAILED = 7
EXIT_INTERRUPTED = 130
