#!/usr/bin/env bash
# Installs the BMC emulators the power tests drive (as root): the Redfish emulator
# sushy-tools and the IPMI emulator virtualbmc, from PyPI into a venv that sees
# Debian's python3-libvirt (both drive libvirt domains). Idempotent.
#   DLS_EMULATORS=/opt/disklessset-emulators   where the venv goes (the tests read it too)
set -euo pipefail
VENV=${DLS_EMULATORS:-/opt/disklessset-emulators}
SUSHY=sushy-tools==2.2.0
VBMC=virtualbmc==3.3.0
if [ -x "$VENV/bin/sushy-emulator" ] && [ -x "$VENV/bin/vbmcd" ] \
  && "$VENV/bin/pip" freeze 2>/dev/null | grep -qx "$SUSHY" \
  && "$VENV/bin/pip" freeze 2>/dev/null | grep -qx "$VBMC"; then
  exit 0
fi
echo "installing $SUSHY $VBMC into $VENV"
/usr/bin/python3 -m venv --system-site-packages "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "$SUSHY" "$VBMC" </dev/null
"$VENV/bin/python" -c 'import libvirt, bcrypt, sushy_tools, virtualbmc'
