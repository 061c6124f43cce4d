# Memory tuning from the CMDB: kernel vm knobs, and services run under jemalloc.
include:
  - .vm
  - .jemalloc
