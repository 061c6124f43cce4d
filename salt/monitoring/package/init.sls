{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as monitoring with context %}

monitoring-package-install-pkg-installed:
  pkg.installed:
    - pkgs: {{ [monitoring.packages.prometheus, monitoring.packages.alertmanager] | json }}
