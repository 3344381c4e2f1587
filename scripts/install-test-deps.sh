#!/usr/bin/env bash
# Installs what the integration tests need and nothing else; safe to run again.
#  - Azurite (the Azure Storage emulator) from the npm registry into ./node_modules, pinned to
#    the version the storage tests were written against; sim::azurite finds
#    node_modules/.bin/azurite-blob from there.
#  - MailDev (an SMTP server on loopback whose REST API lists what it received) from the npm
#    registry, pinned the same way; sim::maildev finds node_modules/.bin/maildev.
#  - kubectl from Debian's packages when it is missing (the simulator tests drive it).
#  - lua5.1 from Debian's packages when it is missing (the Argo CD health check test).
#  - prometheus (the server and promtool) from Debian's packages when missing (the alert rules'
#    and the dashboard's tests: tests/monitoring_rules.rs, tests/monitoring_prometheus.rs).
#  - Helm v4, as the helm-sdkpy package from PyPI (Helm's own Go code built as a shared library,
#    driven by tests/deploy_support/helm_driver.py), pinned; the chart tests run it. PyYAML
#    reads `helm -f values.yaml` in the documentation tests' `helm` command.
#  - chromium and chromium-driver from Debian's packages (the Quick Start page browser test).
#  - faketime (libfaketime) from Debian's packages when missing (the retention tests).
set -euo pipefail

AZURITE_VERSION="3.37.0"
HELM_SDKPY_VERSION="0.1.32"
PYYAML_VERSION="6.0.3"
MAILDEV_VERSION="2.2.1"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

installed_azurite() {
    node -e 'process.stdout.write(require("./node_modules/azurite/package.json").version)' 2>/dev/null || true
}

if ! command -v npm >/dev/null 2>&1; then
    echo "install-test-deps: npm is missing; installing nodejs and npm from Debian" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi

if [ "$(installed_azurite)" != "$AZURITE_VERSION" ] || [ ! -x node_modules/.bin/azurite-blob ]; then
    echo "install-test-deps: installing azurite@$AZURITE_VERSION" >&2
    npm install --no-save --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION" "maildev@$MAILDEV_VERSION"
fi
echo "install-test-deps: azurite $(installed_azurite) at $root/node_modules/.bin/azurite-blob" >&2

installed_maildev() {
    node -e 'process.stdout.write(require("./node_modules/maildev/package.json").version)' 2>/dev/null || true
}
if [ "$(installed_maildev)" != "$MAILDEV_VERSION" ] || [ ! -x node_modules/.bin/maildev ]; then
    echo "install-test-deps: installing maildev@$MAILDEV_VERSION" >&2
    npm install --no-save --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION" "maildev@$MAILDEV_VERSION"
fi
echo "install-test-deps: maildev $(installed_maildev) at $root/node_modules/.bin/maildev" >&2

if ! command -v kubectl >/dev/null 2>&1; then
    echo "install-test-deps: installing kubectl from Debian" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubectl >/dev/null
fi
echo "install-test-deps: $(kubectl version --client 2>/dev/null | head -n 1)" >&2

# Lua 5.1 (the Lua of Argo CD's health checks) runs the documented Argo CD health check in
# tests/deploy_argocd.rs.
if ! command -v lua5.1 >/dev/null 2>&1; then
    echo "install-test-deps: installing lua5.1 from Debian" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lua5.1 >/dev/null
fi
echo "install-test-deps: $(lua5.1 -v 2>&1 | head -n 1)" >&2

# The alert rules are checked and unit-tested by promtool, and a real Prometheus server scrapes
# the operator and answers every dashboard query (tests/monitoring_*.rs). The package's service
# is not started: the tests run the server themselves on a free loopback port.
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    echo "install-test-deps: installing prometheus (server and promtool) from Debian" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
echo "install-test-deps: $(promtool --version 2>&1 | head -n 1)" >&2

# Helm is not among Debian's packages; helm-sdkpy ships it for Linux amd64. Its metadata asks
# for a newer Python than some machines have, which the library does not need.
installed_helm_sdkpy() {
    python3 -c 'import importlib.metadata as m; print(m.version("helm-sdkpy"))' 2>/dev/null || true
}
installed_pyyaml() {
    python3 -c 'import yaml; print(yaml.__version__)' 2>/dev/null || true
}
if [ "$(installed_helm_sdkpy)" != "$HELM_SDKPY_VERSION" ] || [ "$(installed_pyyaml)" != "$PYYAML_VERSION" ]; then
    if ! python3 -m pip --version >/dev/null 2>&1; then
        echo "install-test-deps: installing python3-pip from Debian" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
    fi
    echo "install-test-deps: installing helm-sdkpy==$HELM_SDKPY_VERSION" >&2
    PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --disable-pip-version-check \
        --ignore-requires-python "helm-sdkpy==$HELM_SDKPY_VERSION" cffi "PyYAML==$PYYAML_VERSION"
fi
echo "install-test-deps: helm $(python3 -c 'import helm_sdkpy; print(helm_sdkpy.get_version())')" >&2
# Headless Chromium and its WebDriver from Debian's packages: tests/quickstart_browser.rs
# clicks through the Quick Start page in a real browser.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    echo "install-test-deps: installing chromium and chromium-driver from Debian" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
echo "install-test-deps: $(chromium --version 2>/dev/null | head -n 1); $(chromedriver --version 2>/dev/null | head -n 1)" >&2

# libfaketime runs Azurite with its clock in the past, so the retention tests have really old
# blobs by Azurite's own clock (sim::azurite's Azurite::set_clock_behind).
if ! ls /usr/lib/*/faketime/libfaketime.so.1 /usr/lib/faketime/libfaketime.so.1 >/dev/null 2>&1; then
    echo "install-test-deps: installing faketime from Debian" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime >/dev/null
fi
echo "install-test-deps: libfaketime $(ls /usr/lib/*/faketime/libfaketime.so.1 /usr/lib/faketime/libfaketime.so.1 2>/dev/null | head -n 1)" >&2
