#!/usr/bin/env bash
# The whole suite, as `make test` runs it (inside .ci/test-env.sh, which started the
# services): every test not marked `exclusive` on TEST_WORKERS processes (pytest-xdist,
# default 2: this machine's cores; a file's tests stay on one process), then the
# `exclusive` ones (they stop, kill or freeze a shared broker or database) alone.
# Both runs always happen; the exit code is the first failure's. Arguments go to both.
# Usage: .ci/pytest.sh PYTHON [pytest arguments...]
set -uo pipefail
python="$1"
shift
workers="${TEST_WORKERS:-2}"
parallel=(-n "$workers" --dist loadfile)
if [[ "$workers" == 0 ]]; then
    parallel=()
fi
"$python" -m pytest -m "not exclusive" "${parallel[@]}" "$@"
first=$?
"$python" -m pytest -m exclusive "$@"
second=$?
if [[ $first == 5 && $second == 5 ]]; then
    exit 5 # no test at all: a failure (see test-env.sh)
fi
if [[ $second == 5 ]]; then
    second=0 # no exclusive test among those asked for
fi
if [[ $first == 5 ]]; then
    first=0 # only exclusive tests asked for
fi
if [[ $first != 0 ]]; then
    exit "$first"
fi
exit "$second"
