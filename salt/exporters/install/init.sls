{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as exporters, wanted with context %}
# Every exporter in pillar `exporters`: installed as configured (exporter.installed),
# or removed with `ensure: absent`. The whole mapping is validated first, so a bad
# value stops the run before anything is written.

exporters-install-pillar-validated:
  exporter.validated:
    - exporters: {{ wanted | json }}

{%- for name, options in wanted | dictsort %}
{%-   if options is mapping and options.get("ensure", "present") == "absent" %}

exporters-install-{{ name }}-absent:
  exporter.absent:
    - name: {{ name }}
    - require:
      - exporter: exporters-install-pillar-validated
{%-   elif options is mapping %}
{%-     set nginx = options.get("nginx") or {} %}
{%-     if name == "nginx_exporter" and nginx.get("stub_status", {}) is not false
           and exporters.nginx_package %}

exporters-install-nginx-package-installed:
  pkg.installed:
    - name: {{ exporters.nginx_package }}
    - require:
      - exporter: exporters-install-pillar-validated
{%-     endif %}

exporters-install-{{ name }}-installed:
  exporter.installed:
    - name: {{ name }}
{%-     for key, value in options | dictsort if key != "ensure" %}
    - {{ key }}: {{ value | json }}
{%-     endfor %}
    - require:
      - exporter: exporters-install-pillar-validated
{%-     if name == "nginx_exporter" and nginx.get("stub_status", {}) is not false
           and exporters.nginx_package %}
      - pkg: exporters-install-nginx-package-installed
{%-     endif %}
{%-   endif %}
{%- endfor %}
