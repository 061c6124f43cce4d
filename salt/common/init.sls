# Baseline for every host: packages, and files that show what the CMDB made of the host.
include:
  - .package
  - .config
