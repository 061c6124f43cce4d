# Baseline for every host: packages, files that show what the CMDB made of the host,
# and the host's scrape targets in the Salt mine (published last in the run).
include:
  - .package
  - .config
  - .mine
