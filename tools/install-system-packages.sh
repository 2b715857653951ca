#!/usr/bin/env bash
# Installs the Debian packages callgate needs, when missing. Usage: install-system-packages.sh PKG...
# Each argument is "package" or "package:command" (the command that shows it is installed).
# Needs root (or sudo) and Debian's package archive; prints what it does and is a no-op when all
# commands are present.
set -euo pipefail
missing=()
for spec in "$@"; do
  pkg=${spec%%:*}
  cmd=${spec#*:}
  [ "$cmd" = "$spec" ] && cmd=$pkg
  if ! command -v "$cmd" >/dev/null 2>&1; then
    missing+=("$pkg")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "need root to install ${missing[*]}; install them and run again" >&2; exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
