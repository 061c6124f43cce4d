# Prometheus exporters the host's pillar (CMDB) lists, as verified, hardened systemd
# services, and their scrape targets in the Salt mine.
include:
  - .install
  - .mine
