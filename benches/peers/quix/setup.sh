#!/usr/bin/env bash
# Creates benches/peers/quix/.venv and installs requirements.txt into it.
# Idempotent: when the venv already holds exactly this requirements.txt
# (recorded by its sha256), it returns at once.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
req="$here/requirements.txt"
stamp="$venv/.requirements.sha256"
python="${PYTHON:-python3}"

want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
# Import check; its output (a third-party deprecation warning) is shown only on failure.
if ! out="$("$venv/bin/python" -c 'import quixstreams, confluent_kafka' 2>&1)"; then
    echo "$out" >&2
    exit 1
fi
echo "$want" > "$stamp"
echo "quix peer: venv ready at $venv" >&2
