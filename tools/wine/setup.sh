#!/usr/bin/env bash
# Sets up callgate's `wine` adapter: installs Wine and mingw-w64 from Debian packages when they are
# missing (one apt-get update, then install --no-install-recommends), builds the adapter program
# (adapters/wine/callgate_wine_adapter.c, which includes examples/c-adapter/callgate_jsonl.h) into
# build/wine/ with x86_64-w64-mingw32-gcc, and prepares the private Wine prefix
# (CALLGATE_WINEPREFIX, default ~/.cache/callgate/wine-prefix).
# Usage: tools/wine/setup.sh [PYTHON]   (PYTHON: the interpreter callgate is installed in)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${1:-.venv/bin/python}
./tools/install-system-packages.sh $(cat tools/wine/packages.txt)
"$PY" - <<'PYEOF'
from callgate.conformance.implementations import wine

s = wine.setup()
print(f"wine adapter ready: {s.wine} {s.program} (WINEPREFIX={s.prefix})")
PYEOF
