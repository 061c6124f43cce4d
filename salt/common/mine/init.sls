# Every scrape target opskit runs on this host (exporters, Anubis instances, ...) in
# the Salt mine, in Prometheus file_sd shape: opskit.targets, published last in the
# run (after the formulas that install what it lists). Formulas that add or remove
# targets include this SLS, so `state.apply exporters` publishes too.

common-mine-targets-opskit-targets_published:
  opskit.targets_published:
    - name: opskit_targets
    - order: last

# The exporters formula used to declare its own mine function in this file; its
# entry (exporter_targets) goes with it.
common-mine-legacy-config-file-absent:
  file.absent:
    - name: /etc/salt/minion.d/opskit-exporters-mine.conf

common-mine-legacy-entry-module-run:
  module.run:
    - mine.delete:
      - fun: exporter_targets
    - onchanges:
      - file: common-mine-legacy-config-file-absent
