#!/bin/sh
# Install the Debian 12 packages zpf needs to build and test, and nothing
# that is already there.  Uses sudo when not root.  `make deps` runs this;
# on a fresh machine without make, run it directly first.
set -eu
pkgs="make gcc pkg-config libuv1-dev libmsgpack-dev libsodium-dev
      libsqlite3-dev libyaml-dev libcurl4-openssl-dev libjansson-dev
      libxml2-dev libcmocka-dev clang libclang-rt-14-dev python3
      iproute2 nftables procps"
missing=""
for p in $pkgs; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -z "$missing" ]; then
    echo "deps: everything is installed"
    exit 0
fi
echo "deps: installing$missing"
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
