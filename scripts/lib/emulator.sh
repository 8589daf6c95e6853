# Sourced by scripts/*: makes sure .venv holds the pinned AWS emulator (moto server mode).
# Idempotent; installs only what is missing or at the wrong version.
MOTO_VERSION="5.2.5"
# Policy and template validators the tests run (e2e::validators): parliament lints the
# generated IAM policies, cfn-lint the CloudFormation templates.
PARLIAMENT_VERSION="1.6.4"
CFN_LINT_VERSION="1.58.0"

ensure_emulator() {
    local root="$1"
    local venv="$root/.venv"
    if [ -x "$venv/bin/moto_server" ] &&
        [ "$("$venv/bin/python" -c 'import moto; print(moto.__version__)' 2>/dev/null)" = "$MOTO_VERSION" ]; then
        return 0
    fi
    echo "==> installing the AWS emulator (moto[server]==$MOTO_VERSION) into .venv" >&2
    local python="${PYTHON:-python3}"
    command -v "$python" >/dev/null || { echo "error: $python not found; install Python 3.9+" >&2; return 1; }
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
}

ensure_validators() {
    local root="$1"
    local venv="$root/.venv"
    if [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("parliament"), m.version("cfn-lint"))' 2>/dev/null)" = "$PARLIAMENT_VERSION $CFN_LINT_VERSION" ]; then
        return 0
    fi
    echo "==> installing the policy validators (parliament==$PARLIAMENT_VERSION, cfn-lint==$CFN_LINT_VERSION) into .venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "parliament==$PARLIAMENT_VERSION" "cfn-lint==$CFN_LINT_VERSION"
}
