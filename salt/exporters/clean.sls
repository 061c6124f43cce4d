# Removes every exporter opskit installed and their mine entry.
include:
  - .install.clean
  - .mine.clean
