#!/usr/bin/env bash
# Install the Debian packages Moodscape needs, only when missing:
#   fluidsynth + fluid-soundfont-gm  MIDI → audio (EMOPIA rendering)
#   redis-server                     the optional shared response cache and the celery executor's broker
#                                    (both tested against a real server)
#   chromium + chromium-driver       the headless-browser test of the web page
#   postgresql                       the production Dagster profile (tested against a real server)
set -euo pipefail
missing=()
command -v fluidsynth >/dev/null 2>&1 || missing+=(fluidsynth)
[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || missing+=(fluid-soundfont-gm)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing Debian packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
