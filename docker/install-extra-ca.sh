#!/bin/sh
# Build step of every image here: trust the extra CA certificates given in the EXTRA_CA_CERTS
# build argument (PEM text, one or more certificates), as a site behind a TLS-inspecting proxy
# needs for apt over HTTPS and pip. Empty: nothing to do (the image is unchanged).
#
# They become Debian local CAs (/usr/local/share/ca-certificates/extra/*.crt). Every later
# `update-ca-certificates`, e.g. the one that runs when a later layer installs ca-certificates,
# merges them into /etc/ssl/certs/ca-certificates.crt, the bundle that Debian's pip, curl and
# OpenSSL read. A pip that carries its own bundle (upstream pip, in the Airflow image) is
# pointed at the system bundle by /etc/pip.conf.
set -eu
[ -n "${EXTRA_CA_CERTS:-}" ] || exit 0

split=$(mktemp -d)
trap 'rm -rf "$split"' EXIT
printf '%s\n' "$EXTRA_CA_CERTS" | awk -v dir="$split" '
  /-----BEGIN CERTIFICATE-----/ { n++; file = sprintf("%s/extra-ca-%02d.crt", dir, n); inside = 1 }
  inside { print > file }
  /-----END CERTIFICATE-----/ { inside = 0; close(file) }'
count=$(find "$split" -name '*.crt' | wc -l)
if [ "$count" -eq 0 ]; then
  echo "install-extra-ca: EXTRA_CA_CERTS holds no PEM certificate (-----BEGIN CERTIFICATE-----)" >&2
  exit 1
fi
dir=/usr/local/share/ca-certificates/extra
mkdir -p "$dir"
chmod 644 "$split"/*.crt
mv "$split"/*.crt "$dir"/
echo "install-extra-ca: $count certificate(s) in $dir"

if command -v update-ca-certificates >/dev/null 2>&1; then
  update-ca-certificates >/dev/null
fi
if [ ! -e /etc/pip.conf ]; then
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >/etc/pip.conf
fi
