{%- from "nginx/map.jinja" import mapdata as nginx with context %}

# Every changed file was tested on its own before it was installed; this tests the
# live configuration as a whole once more before the reload. (Debian's reload only
# signals nginx, which keeps its old configuration when the new one is bad but reports
# success; this test is what makes a bad configuration fail the Salt run.) Sites from
# other formulas join through onchanges_in (nginx/macros.jinja). The command is an
# argv list: no shell ever sees a pillar value.
nginx-service-config-test-module-run:
  module.run:
    - cmd.run_all:
      - cmd: {{ [nginx.binary, "-t", "-q"] | json }}
      - python_shell: false
    - onchanges:
      - file: nginx-config-file-managed
    - require:
      - pkg: nginx-package-install-pkg-installed

# Reloaded, never restarted, on configuration changes: a running nginx keeps serving.
nginx-service-running-service-running:
  service.running:
    - name: {{ nginx.service | json }}
    - enable: true
    - reload: true
    - require:
      - module: nginx-service-config-test-module-run
    - watch:
      - file: nginx-config-file-managed
