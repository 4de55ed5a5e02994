#!/usr/bin/env bash
# Installs the real servers the cluster tests talk to: etcd (registry backend) and
# dnsmasq (DNS discovery). Tests start and stop their own instances on loopback.
set -euo pipefail
need=()
command -v etcd >/dev/null || need+=(etcd-server)
command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
echo "setup-test-services: installed ${need[*]}"
