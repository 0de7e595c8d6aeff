#!/usr/bin/env bash
# Runs the Quix Streams peer with the venv's interpreter (run setup.sh first).
# Configuration comes from the environment; see README.md.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ ! -x "$here/.venv/bin/python" ]]; then
    echo "quix peer: $here/.venv is missing; run $here/setup.sh first" >&2
    exit 2
fi
exec "$here/.venv/bin/python" -u "$here/app.py" "$@"
