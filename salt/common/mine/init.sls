# Every scrape target opskit runs on this host (exporters, Anubis instances, ...) in
# the Salt mine, in Prometheus file_sd shape: opskit.targets, published last in the
# run (after the formulas that install what it lists). Formulas that add or remove
# targets include this SLS, so `state.apply exporters` publishes too.

common-mine-targets-opskit-targets_published:
  opskit.targets_published:
    - name: opskit_targets
    - order: last

# Before opskit_targets, the exporters formula declared its own mine function in this
# file (entry exporter_targets) and the anubis formula sent anubis_targets; both go.
# exporter_targets is deleted once, with the file: until the minion restarts, its
# mine_interval may publish it again from the configuration it loaded. anubis_targets
# was sent by a state, so opskit.targets_absent removes it for good (no change once gone).
common-mine-legacy-config-file-absent:
  file.absent:
    - name: /etc/salt/minion.d/opskit-exporters-mine.conf

common-mine-legacy-entry-module-run:
  module.run:
    - mine.delete:
      - fun: exporter_targets
    - onchanges:
      - file: common-mine-legacy-config-file-absent

common-mine-legacy-anubis-targets-absent:
  opskit.targets_absent:
    - name: anubis_targets
