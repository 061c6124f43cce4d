{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as monitoring with context %}
# Removes the files the formula added next to the packages' own (rules, targets,
# scrape credentials); the packages' configuration goes with them (package.clean).
include:
  - {{ (tplroot ~ ".service.clean") | json }}

monitoring-config-clean-file-absent:
  file.absent:
    - names:
      - {{ monitoring.prometheus.rules_dir | json }}
      - {{ monitoring.targets.dir | json }}
      - {{ monitoring.scrape.secrets_dir | json }}
      - /etc/prometheus/opskit-targets.json
    - require:
      - sls: {{ (tplroot ~ ".service.clean") | json }}
