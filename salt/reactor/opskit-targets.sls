# Reactor for `opskit/targets/published`, the event a minion sends when its scrape
# targets in the mine changed (opskit.targets_published, common.mine). Map it in the
# master config:
#
#   reactor:
#     - opskit/targets/published:
#       - salt://reactor/opskit-targets.sls
#
# The monitoring hosts (pillar role `monitoring`) rewrite their file_sd target files
# from the mine at once; Prometheus reads the new files without a reload. The event's
# data is not used: any minion can send this event, and all it can cause is a re-read
# of the mine, which checks every entry.
opskit-targets-refresh-monitoring-hosts:
  local.monitoring.refresh_targets:
    - tgt: roles:monitoring
    - tgt_type: pillar
