{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as exporters, wanted with context %}
# The Salt mine learns this host's scrape targets: a minion configuration file makes
# `exporter.targets` a mine function (refreshed every mine_interval once the minion
# has restarted), and whenever an exporter or that file changes, the targets are sent
# at once.
{%- if exporters.mine.enabled and wanted %}

exporters-mine-config-file-managed:
  file.managed:
    - name: {{ exporters.mine.config_file | json }}
    - mode: "0644"
    - makedirs: true
    - contents: |
        # Managed by opskit's exporters formula: publish exporter scrape targets.
        mine_functions:
          {{ exporters.mine.function | json }}:
            mine_function: exporter.targets

exporters-mine-targets-sent:
  module.run:
    - mine.send:
      - {{ exporters.mine.function | json }}
      - mine_function: exporter.targets
    - onchanges:
      - file: exporters-mine-config-file-managed
      - sls: {{ (tplroot ~ ".install") | json }}
{%- endif %}
