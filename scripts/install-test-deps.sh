#!/usr/bin/env bash
# Installs what the integration tests need and nothing else; safe to run again.
#  - Azurite (the Azure Storage emulator) from the npm registry into ./node_modules, pinned to
#    the version the storage tests were written against; sim::azurite finds
#    node_modules/.bin/azurite-blob from there.
#  - kubectl from Debian's packages when it is missing (the simulator tests drive it).
set -euo pipefail

AZURITE_VERSION="3.37.0"
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
    npm install --no-save --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION"
fi
echo "install-test-deps: azurite $(installed_azurite) at $root/node_modules/.bin/azurite-blob" >&2

if ! command -v kubectl >/dev/null 2>&1; then
    echo "install-test-deps: installing kubectl from Debian" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubectl >/dev/null
fi
echo "install-test-deps: $(kubectl version --client 2>/dev/null | head -n 1)" >&2
