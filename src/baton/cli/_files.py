"""Reading the files and JSON arguments commands take, with errors that name them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from baton.cli._client_cli import CliError, one_line
from baton.cli._common import EXIT_USAGE


def read_data(path: Path) -> Any:
    """The data of a JSON file (`.json`) or a YAML file (anything else); CliError naming the file when bad."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{path}: not UTF-8 text", EXIT_USAGE) from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as error:
        raise CliError(f"{path}: invalid JSON: {error}", EXIT_USAGE) from None
    except yaml.YAMLError as error:
        raise CliError(f"{path}: invalid YAML: {one_line(str(error))}", EXIT_USAGE) from None


def json_object(text: str | None, path: Path | None, what: str) -> dict[str, Any] | None:
    """A JSON object given inline (`--context '{...}'`) or in a JSON/YAML file; None when neither is given."""
    if text is not None and path is not None:
        raise CliError(f"give {what} inline or as a file, not both", EXIT_USAGE)
    if path is not None:
        data = read_data(path)
        source = str(path)
    elif text is not None:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise CliError(f"{what}: invalid JSON: {error}", EXIT_USAGE) from None
        source = what
    else:
        return None
    if not isinstance(data, dict):
        raise CliError(f"{source}: expected a JSON object, found {type(data).__name__}", EXIT_USAGE)
    return data
