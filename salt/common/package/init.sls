{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as common with context %}

common-package-install-pkg-installed:
  pkg.installed:
    - pkgs: {{ common.packages | json }}
