#!/usr/bin/env bash
# CI's Colab job: a Python 3.13 environment pinned to Colab's kernel stack (.ci/colab/pins.txt, from Colab's
# own package list), tutor_nb installed into it by the notebooks' own install line, a check that no package
# Colab has changed and pip printed no ERROR, then every notebook executed there with a stand-in
# google.colab (the install cell, secrets, the panel's Colab branch), and a kernel started after the install.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
started=$SECONDS

find_python313() {
  local candidate root
  if [ -n "${COLAB_PYTHON:-}" ]; then echo "$COLAB_PYTHON"; return; fi
  if command -v pyenv >/dev/null 2>&1; then
    root=$(pyenv root)
    for candidate in $(ls -d "$root"/versions/3.13* 2>/dev/null | sort -V -r); do
      [ -x "$candidate/bin/python3.13" ] && { echo "$candidate/bin/python3.13"; return; }
    done
  fi
  for candidate in python3.13 /usr/bin/python3.13 /usr/local/bin/python3.13; do
    if "$candidate" -c 'import venv, ensurepip' >/dev/null 2>&1; then command -v "$candidate"; return; fi
  done
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ] \
      && apt-cache policy python3.13-venv 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3.13-venv >/dev/null && echo /usr/bin/python3.13
    return
  fi
  return 1
}

if ! PYTHON=$(find_python313); then
  echo "Colab job: no Python 3.13 found (Colab runs 3.13). Looked for pyenv's 3.13.*, python3.13 on PATH, and" >&2
  echo "Debian's python3.13-venv. Install one, or set COLAB_PYTHON=/path/to/python3.13." >&2
  exit 1
fi
echo "== Colab job: $("$PYTHON" --version) at $PYTHON"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tutor_nb_colab.XXXXXX")
if [ -n "${COLAB_KEEP:-}" ]; then echo "   (COLAB_KEEP: the environment stays in $WORK)"; else trap 'rm -rf "$WORK"' EXIT; fi
VENV=$WORK/venv
"$PYTHON" -m venv "$VENV"
PY=$VENV/bin/python
quiet() { "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }; }  # this machine's mirror notices
quiet "$PY" -m pip install -q "$(grep -m1 '^pip==' .ci/colab/freeze.txt)"  # Colab's pip, whose resolver speaks below
quiet "$PY" -m pip install -q --no-deps -r .ci/colab/pins.txt
"$PY" .ci/colab_env.py standins
"$PY" .ci/colab_env.py snapshot "$WORK/before.json"
echo "== kernel stack before the install"
"$PY" .ci/colab_env.py stack "$WORK/before.json"

# The notebooks' install line, with the repository address it names served from this checkout
# (git's url.<base>.insteadOf, through the environment): the same line a learner runs in Colab.
INSTALL_LINE=$(cd notebooks && "$PY" -c 'import build; print(build.install_requirement())')
REPOSITORY=${INSTALL_LINE#*git+}
export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0="url.file://$ROOT.insteadOf" GIT_CONFIG_VALUE_0="$REPOSITORY"
echo "== pip install \"$INSTALL_LINE\"   ($REPOSITORY served from this checkout's commit $(git rev-parse --short HEAD))"
status=0
"$PY" -m pip install "$INSTALL_LINE" >"$WORK/pip.log" 2>&1 || status=$?
# what pip did, and anything it warned or complained about (not this machine's mirror notices)
grep -E '^(Collecting|Installing|Successfully|ERROR|WARNING)' "$WORK/pip.log" | grep -v '^WARNING: Location' || true
[ "$status" = 0 ] || { echo "FAIL: pip install exited with $status" >&2; exit 1; }
"$PY" .ci/colab_env.py snapshot "$WORK/after.json"
echo "== kernel stack after the install"
"$PY" .ci/colab_env.py stack "$WORK/after.json"
"$PY" .ci/colab_env.py check "$WORK/before.json" "$WORK/after.json" "$WORK/pip.log"

# The test runner's timeout plugin is not in Colab; it comes after the check, and touches no kernel package.
quiet "$PY" -m pip install -q pytest-timeout
echo "== every notebook, and a kernel started after the install, in the Colab-pinned environment"
"$PY" -m pytest -p no:cacheprovider --colab -q -rfEp tests/test_colab.py tests/test_notebooks.py
"$PY" .ci/colab_env.py snapshot "$WORK/end.json"
"$PY" .ci/colab_env.py check "$WORK/after.json" "$WORK/end.json" /dev/null >/dev/null \
  || { echo "FAIL: running the notebooks changed the environment" >&2; "$PY" .ci/colab_env.py check "$WORK/after.json" "$WORK/end.json" /dev/null; exit 1; }
echo "== Colab job passed in $((SECONDS - started)) s"
