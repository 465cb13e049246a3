#!/bin/sh
# Installs Postfix's smtp-source load generator and smtp-sink next hop (Debian/Ubuntu; both
# come with the postfix package) without leaving a
# Postfix daemon running. Idempotent: exits 0 at once if smtp-source is present.
set -eu

if command -v smtp-source >/dev/null 2>&1 || [ -x /usr/sbin/smtp-source ]; then
  echo "smtp-source already present: $(command -v smtp-source || echo /usr/sbin/smtp-source)"
  exit 0
fi

# sudo only when not root (containers often have no sudo at all)
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi

# "No configuration" makes the postfix package install without writing main.cf,
# so its postinst does not configure or start a mail system.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postfix

# Belt and braces: make sure no master/qmgr/pickup daemon is left running.
# (Without main.cf the postinst normally doesn't start one; these are no-ops then.)
$SUDO postfix stop >/dev/null 2>&1 || true
$SUDO service postfix stop >/dev/null 2>&1 || true

test -x /usr/sbin/smtp-source
echo "smtp-source installed at /usr/sbin/smtp-source"
