{%- from "nginx/map.jinja" import mapdata as nginx with context %}
# Stops nginx and removes what this formula added. Other formulas' sites go with the
# sites directory: apply their own clean states first.

nginx-clean-service-dead:
  service.dead:
    - name: {{ nginx.service | json }}
    - enable: false

nginx-clean-sites-dir-file-absent:
  file.absent:
    - name: {{ nginx.sites_dir | json }}
    - require:
      - service: nginx-clean-service-dead

nginx-clean-test-script-file-absent:
  file.absent:
    - name: {{ nginx.test_script | json }}

nginx-clean-package-pkg-removed:
  pkg.removed:
    - pkgs: {{ nginx.packages | json }}
    - require:
      - service: nginx-clean-service-dead
