# Sourced by scripts/run and scripts/test: pick a Python 3.11+ and make .venv with it.
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "eventstore needs Python 3.11 or newer; '$PY' is $("$PY" --version 2>&1 || echo missing)." >&2
  echo "Install one, or point PYTHON at it: PYTHON=python3.12 $0" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi

# install_project EXTRA: `pip install -e .[EXTRA]` into .venv, only when pyproject.toml
# changed since the last install of that extra (or of `all`). The stamp file
# .venv/.eventstore-EXTRA holds pyproject.toml's SHA-256; delete it to force a reinstall.
# pip's output (setuptools' "Editable installation" warnings among it) goes to
# .venv/pip-install.log and is shown only when the install fails.
install_project() {
  local extra=$1 hash
  hash=$(.venv/bin/python -c 'import hashlib,sys; print(hashlib.sha256(open("pyproject.toml","rb").read()).hexdigest())')
  for stamp in ".venv/.eventstore-$extra" .venv/.eventstore-all; do
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ]; then
      return 0
    fi
  done
  echo "Installing eventstore[$extra] into .venv (first install, or pyproject.toml changed)..." >&2
  if ! .venv/bin/python -m pip install --quiet -e ".[$extra]" >.venv/pip-install.log 2>&1; then
    cat .venv/pip-install.log >&2
    echo "pip install failed; the log above is in .venv/pip-install.log" >&2
    exit 1
  fi
  echo "$hash" >".venv/.eventstore-$extra"
}
