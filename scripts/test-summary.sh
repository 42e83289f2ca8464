#!/usr/bin/env bash
# The last lines of `make test`: one line per stage and the verdict, so nobody has to scroll
# back to learn whether everything passed. Exits 1 when a stage failed, 0 otherwise.
#
#   scripts/test-summary.sh PYTEST_LOG TESTS_STATUS LINT_STATUS MATRIX_STATUS [PYTHON_NEW]
#
# PYTEST_LOG is the output of the tests' pytest run (its closing line is repeated here);
# an empty PYTHON_NEW means the matrix found no Python 3.12+ (it then says "skipped").
set -u

log=${1:?usage: $0 PYTEST_LOG TESTS_STATUS LINT_STATUS MATRIX_STATUS [PYTHON_NEW]}
tests=${2:?} lint=${3:?} matrix=${4:?} python_new=${5:-}

# pytest's closing line ("==== 12 passed, 1 skipped in 3.10s ===="), without colours.
closing=""
if [ -r "$log" ]; then
    closing=$(sed 's/\x1b\[[0-9;]*m//g' "$log" \
        | grep -E '^=+ .*(passed|failed|error|skipped|deselected|no tests ran).* in [0-9.]+s.* =+$' \
        | tail -n 1 | sed -E 's/^=+ //; s/ =+$//')
fi

failed=()
line() {  # NAME STATUS DETAIL
    local name=$1 status=$2 detail=$3 word
    if [ "$status" = 0 ]; then
        word=passed
    else
        word=FAILED
        failed+=("$name")
        detail="exit $status${detail:+; $detail}"
    fi
    if [ "$name" = matrix ] && [ "$status" = 0 ] && [ -z "$python_new" ]; then
        word=skipped detail="no Python 3.12+ found; set PYTHON_NEW=/path/to/python3.12"
    fi
    printf '  %-7s %-7s %s\n' "$name" "$word" "${detail:+($detail)}"
}

echo "------------------------------------------------------------------------"
echo "make test: summary"
line tests "$tests" "${closing:-pytest printed no closing line}"
line lint "$lint" "ruff, mypy"
line matrix "$matrix" "newest Django on Python 3.12+"
if [ ${#failed[@]} -eq 0 ]; then
    echo "make test: PASSED (tests, lint and matrix)"
    exit 0
fi
echo "make test: FAILED (${failed[*]}; see that stage's output above)"
exit 1
