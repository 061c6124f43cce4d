{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as exporters with context %}
# Stops publishing scrape targets: removes the mine configuration and the mine entry.

exporters-mine-clean-config-file-absent:
  file.absent:
    - name: {{ exporters.mine.config_file | json }}

exporters-mine-clean-targets-deleted:
  module.run:
    - mine.delete:
      - {{ exporters.mine.function | json }}
    - onchanges:
      - file: exporters-mine-clean-config-file-absent
