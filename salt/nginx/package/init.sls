{%- from "nginx/map.jinja" import mapdata as nginx with context %}

nginx-package-install-pkg-installed:
  pkg.installed:
    - pkgs: {{ nginx.packages | json }}
