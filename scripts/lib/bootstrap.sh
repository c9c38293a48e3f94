# shellcheck shell=bash
# Shared set-up for scripts/serve and scripts/test; sourced, never run. Expects the repository root as the
# working directory. Everything here is idempotent: a second call with nothing changed does (almost) nothing.

BATON_VENV=".venv"
BATON_PYTHON_VERSION="3.11"
# Written after a successful `pip install`: "<sha256 of pyproject.toml> <runtime|dev>".
BATON_STAMP="$BATON_VENV/.baton-install-stamp"

# Print a message on stderr and stop.
die() {
    echo "error: $*" >&2
    exit 1
}

# The interpreter that creates .venv: python3.11, else python3 when it is 3.11.
find_python() {
    local candidate
    for candidate in "python$BATON_PYTHON_VERSION" python3; do
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c "import sys; sys.exit(sys.version_info[:2] != (3, 11))" 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

# Create .venv unless it exists with a working Python 3.11 (a venv whose base interpreter is gone is rebuilt).
ensure_venv() {
    if [[ -x "$BATON_VENV/bin/python" ]] \
        && "$BATON_VENV/bin/python" -c "import sys; sys.exit(sys.version_info[:2] != (3, 11))" 2>/dev/null; then
        return 0
    fi
    local python
    python="$(find_python)" || die "Python $BATON_PYTHON_VERSION is needed (python$BATON_PYTHON_VERSION or python3)"
    if [[ -e "$BATON_VENV" ]]; then
        echo "bootstrap: $BATON_VENV is broken; recreating it" >&2
        rm -rf "$BATON_VENV"
    fi
    echo "bootstrap: creating $BATON_VENV with $python" >&2
    "$python" -m venv "$BATON_VENV"
}

# Run a command with its output kept in a log that is shown only if the command fails.
run_quietly() {
    local log status=0
    log="$(mktemp)"
    "$@" >"$log" 2>&1 || status=$?
    if ((status != 0)); then
        cat "$log" >&2
        echo "error: '$*' failed (exit $status)" >&2
    fi
    rm -f "$log"
    return "$status"
}

# install_project runtime|dev: make .venv hold the project (editable) with the runtime or the dev dependencies,
# running pip only when pyproject.toml changed since the last install. A dev install also serves `runtime`.
install_project() {
    local flavour="$1" target hash stamp=""
    case "$flavour" in
        runtime) target="." ;;
        dev) target=".[dev]" ;;
        *) die "install_project: unknown flavour '$flavour'" ;;
    esac
    ensure_venv
    hash="$(sha256sum pyproject.toml | cut -d' ' -f1)"
    [[ -f "$BATON_STAMP" ]] && stamp="$(<"$BATON_STAMP")"
    if [[ "$stamp" == "$hash dev" || "$stamp" == "$hash $flavour" ]]; then
        return 0
    fi
    local reason="pyproject.toml changed since the last install"
    if [[ -z "$stamp" ]]; then
        reason="not installed yet"
    elif [[ "${stamp%% *}" == "$hash" ]]; then
        reason="the dev extras are not installed yet"
    fi
    echo "bootstrap: installing $target into $BATON_VENV ($reason)" >&2
    rm -f "$BATON_STAMP"
    run_quietly "$BATON_VENV/bin/python" -m pip install --disable-pip-version-check --no-input -e "$target"
    echo "$hash $flavour" >"$BATON_STAMP"
}

# Run a command as root: directly when we are root, through sudo when it exists, else fail.
as_root() {
    if ((EUID == 0)); then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "'$*' needs root and sudo is not installed"
    fi
}
