# Sourced by scripts/run and scripts/test: pick a Python 3.11+ and make .venv with it.
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "eventstore needs Python 3.11 or newer; '$PY' is $("$PY" --version 2>&1 || echo missing)." >&2
  echo "Install one, or point PYTHON at it: PYTHON=python3.12 $0" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
