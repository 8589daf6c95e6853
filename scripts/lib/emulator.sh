# Sourced by scripts/*: makes sure .venv holds the pinned AWS emulator (moto server mode).
# Idempotent; installs only what is missing or at the wrong version.
MOTO_VERSION="5.2.5"
# Policy and template validators the tests run (e2e::validators): parliament lints the
# generated IAM policies, cfn-lint the CloudFormation templates; py-ocsf-models (the OCSF
# models Prowler writes with) validates `hub status --output ocsf` (e2e::report).
PARLIAMENT_VERSION="1.6.4"
CFN_LINT_VERSION="1.58.0"
OCSF_MODELS_VERSION="0.10.0"

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
    if [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("parliament"), m.version("cfn-lint"), m.version("py-ocsf-models"))' 2>/dev/null)" = "$PARLIAMENT_VERSION $CFN_LINT_VERSION $OCSF_MODELS_VERSION" ]; then
        return 0
    fi
    echo "==> installing the validators (parliament==$PARLIAMENT_VERSION, cfn-lint==$CFN_LINT_VERSION, py-ocsf-models==$OCSF_MODELS_VERSION) into .venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "parliament==$PARLIAMENT_VERSION" "cfn-lint==$CFN_LINT_VERSION" \
        "py-ocsf-models==$OCSF_MODELS_VERSION"
}

# Headless Chromium renders the HTML coverage report in e2e::report (Debian's package;
# a browser downloaded by a test tool is refused on closed networks). Installed when
# missing and this is root with apt-get (CI); otherwise say how, and that test fails.
ensure_browser() {
    if [ -n "${ORGWATCH_CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1; then
        return 0
    fi
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "==> installing Debian's chromium (headless browser for the HTML report test)" >&2
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
    else
        echo "warning: chromium not found; install Debian's chromium package (or set ORGWATCH_CHROMIUM) or the HTML report test fails" >&2
    fi
}
