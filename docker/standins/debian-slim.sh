#!/usr/bin/env bash
# Stand-in for the official debian:<12.x>-slim (or <13.x>, DEBIAN_SUITE=trixie) image where no
# registry serves it: a minimal Debian root filesystem from the Debian archive (debootstrap --variant=minbase),
# minimized the way the official slim images are (debuerreotype: no docs/man/locales, apt
# keeps no caches, services never start during builds), then `docker import`ed under TAG.
# How it differs from the real image: docs/compose-and-deploy.md, "Stand-in base images".
#
# Usage: docker/standins/debian-slim.sh TAG [MIRROR]     (root; needs debootstrap, docker)
# Environment: DEBIAN_SUITE (bookworm; trixie for the SLURM 24.11 cluster, hpc/cluster/),
#   DEBIAN_INCLUDE (comma-separated packages apt installs into the root before it is
#   imported, with the slim settings below: no docs, no service starts, no fsync per file.
#   hpc/cluster/cluster.sh builds its node root so; that image is no stand-in then)
set -euo pipefail
TAG=${1:?usage: debian-slim.sh TAG [MIRROR]}
MIRROR=${2:-${DEBIAN_MIRROR:-http://deb.debian.org/debian}}
DOCKER=${DOCKER:-docker}
SUITE=${DEBIAN_SUITE:-bookworm}

INCLUDE=${DEBIAN_INCLUDE:-}
rootfs=$(mktemp -d /var/tmp/debian-standin.XXXXXX)
chmod 755 "$rootfs"   # the image's / (mktemp's 700 keeps other users out: munge's postinst)
trap 'umount "$rootfs/proc" 2>/dev/null || true; rm -rf --one-file-system "$rootfs" "$rootfs.log"' EXIT
debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 \
  || { tail -20 "$rootfs.log" >&2; exit 1; }

# The official image's apt sources: the release, its updates and the security archive.
rm -f "$rootfs/etc/apt/sources.list"
cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: ${MIRROR}
Suites: ${SUITE} ${SUITE}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: ${SUITE}-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES

# debuerreotype's minimizing config, as in the official images.
cat >"$rootfs/usr/sbin/policy-rc.d" <<'POLICY'
#!/bin/sh
# Services never start while an image is being built.
exit 101
POLICY
chmod 755 "$rootfs/usr/sbin/policy-rc.d"
cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
echo 'Acquire::GzipIndexes "true";' >"$rootfs/etc/apt/apt.conf.d/docker-gzip-indexes"
echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests"
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'DPKG'
# slim: no documentation, manual pages or translations (copyright files stay)
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
DPKG
echo 'force-unsafe-io' >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
if [[ -n $INCLUDE ]]; then
  # One apt pass in the root itself, before the import: apt fetches in parallel, dpkg runs
  # with the settings above. (debootstrap --include fetched one file at a time and, with no
  # policy-rc.d yet, failed to configure mariadb-server.)
  IFS=, read -ra packages <<<"$INCLUDE"
  cp -L /etc/resolv.conf "$rootfs/etc/resolv.conf"
  mount -t proc proc "$rootfs/proc"
  { chroot "$rootfs" apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive chroot "$rootfs" apt-get install -y -qq \
      --no-install-recommends "${packages[@]}"; } >"$rootfs.log" 2>&1 \
    || { cp "$rootfs.log" /var/tmp/debian-standin-apt.log; tail -20 "$rootfs.log" >&2
         echo "debian-slim: the whole log is /var/tmp/debian-standin-apt.log" >&2; exit 1; }
  umount "$rootfs/proc"
fi

# What debootstrap installed before the excludes existed, and the host's leftovers.
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda,locale}/* \
  "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/* \
  "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs"/tmp/*
: >"$rootfs/etc/resolv.conf"
: >"$rootfs/etc/hostname"

version=$(cat "$rootfs/etc/debian_version")
tar --numeric-owner -C "$rootfs" -c . | "$DOCKER" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["bash"]' \
  --change "LABEL org.audio-pipeline.standin=debootstrap-minbase org.audio-pipeline.standin.debian-version=$version${INCLUDE:+ org.audio-pipeline.standin.include=$INCLUDE}" \
  - "$TAG" >/dev/null
echo "stand-in $TAG: Debian $version (debootstrap --variant=minbase $SUITE from $MIRROR${INCLUDE:+, + ${INCLUDE//,/ }})"
