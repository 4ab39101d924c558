#!/usr/bin/env bash
# Install every first-party plugin (plugins/*/ and examples/plugins/*/) into the active
# virtualenv, then run each one's tests in its own folder, with its own settings.
# Needs an activated venv with gigq installed (pip install -e '.[dev]'). Exits non-zero if
# any install or any test run fails; runs them all before saying so.
set -uo pipefail
shopt -s nullglob
cd "$(dirname "$0")/.."

if [ -z "${VIRTUAL_ENV:-}" ]; then
    echo "plugins/run-tests.sh: activate the virtualenv that has gigq installed first" >&2
    exit 2
fi

dists=(plugins/*/pyproject.toml examples/plugins/*/pyproject.toml)
failed=()
for pyproject in "${dists[@]}"; do
    dir=$(dirname "$pyproject")
    echo "== install $dir"
    if ! python -m pip install -q -e "$dir"; then
        failed+=("$dir (install)")
    fi
done
for pyproject in "${dists[@]}"; do
    dir=$(dirname "$pyproject")
    echo "== tests $dir"
    if ! (cd "$dir" && python -m pytest -q -p no:cacheprovider); then
        failed+=("$dir")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "plugin tests failed: ${failed[*]}" >&2
    exit 1
fi
echo "plugin tests passed: ${#dists[@]} distributions"
