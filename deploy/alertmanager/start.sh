#!/bin/sh
# Entry point of the alertmanager container: writes the configuration with the receiver's URL
# (ALERTMANAGER_WEBHOOK_URL) in place of @WEBHOOK_URL@, then runs the command given
# (/bin/alertmanager and its flags). POSIX sh and sed only: prom/alertmanager is a busybox image.
#
#   ALERTMANAGER_TEMPLATE  the configuration with @WEBHOOK_URL@  /etc/alertmanager/alertmanager.yml
#   ALERTMANAGER_CONFIG    where the filled configuration goes   /alertmanager/alertmanager.yml
set -eu
template=${ALERTMANAGER_TEMPLATE:-/etc/alertmanager/alertmanager.yml}
config=${ALERTMANAGER_CONFIG:-/alertmanager/alertmanager.yml}
: "${ALERTMANAGER_WEBHOOK_URL:?set ALERTMANAGER_WEBHOOK_URL to the receiver webhook URL}"
case $ALERTMANAGER_WEBHOOK_URL in
  http://*|https://*) ;;
  *) echo "ALERTMANAGER_WEBHOOK_URL=$ALERTMANAGER_WEBHOOK_URL: expected an http:// or https:// URL" >&2
     exit 2 ;;
esac
case $ALERTMANAGER_WEBHOOK_URL in
  *"'"*|*"
"*) echo "ALERTMANAGER_WEBHOOK_URL: a quote or a line break cannot be part of the URL" >&2
     exit 2 ;;
esac
# escape what sed's replacement treats specially (& \ and the | delimiter)
url=$(printf '%s' "$ALERTMANAGER_WEBHOOK_URL" | sed -e 's/[&|\\]/\\&/g')
sed -e "s|@WEBHOOK_URL@|$url|g" "$template" > "$config.tmp"
mv "$config.tmp" "$config"
exec "$@"
