# Removes every exporter opskit installed, then publishes the host's scrape targets
# again without them (common.mine).
include:
  - .install.clean
  - common.mine
