# Prometheus exporters the host's pillar (CMDB) lists, as verified, hardened systemd
# services; their scrape targets reach the Salt mine through opskit.targets, which
# common.mine publishes after them.
include:
  - .install
  - common.mine
