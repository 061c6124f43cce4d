# Undoes `tuning`: removes opskit's sysctl.d files and jemalloc drop-ins/overrides.
include:
  - .vm.clean
  - .jemalloc.clean
