# Sourced by the scripts: where tickscope's npm-installed tools live, and how to install them.
# shellcheck shell=bash

TICKSCOPE_TOOLS="${TICKSCOPE_TOOLS:-$HOME/.cache/tickscope-tools}"
SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PATH="$TICKSCOPE_TOOLS/node_modules/.bin:$HOME/.cargo/bin:$PATH"

# Installs the npm tools (just, wasm-opt) unless the installed set matches tools-package.json.
install_npm_tools() {
  mkdir -p "$TICKSCOPE_TOOLS"
  if cmp -s "$SCRIPTS_DIR/tools-package.json" "$TICKSCOPE_TOOLS/package.json" \
    && [ -x "$TICKSCOPE_TOOLS/node_modules/.bin/just" ] \
    && [ -x "$TICKSCOPE_TOOLS/node_modules/.bin/wasm-opt" ]; then
    return
  fi
  echo "installing just and wasm-opt (binaryen) from npm into $TICKSCOPE_TOOLS" >&2
  cp "$SCRIPTS_DIR/tools-package.json" "$TICKSCOPE_TOOLS/package.json"
  npm install --prefix "$TICKSCOPE_TOOLS" --no-audit --no-fund --loglevel=error >&2
}
