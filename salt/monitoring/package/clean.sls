{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as monitoring with context %}
# Purges both packages (their configuration and, with it, Prometheus's time series).
include:
  - {{ (tplroot ~ ".service.clean") | json }}

monitoring-package-clean-pkg-purged:
  pkg.purged:
    - pkgs: {{ [monitoring.packages.prometheus, monitoring.packages.alertmanager] | json }}
    - require:
      - sls: {{ (tplroot ~ ".service.clean") | json }}
