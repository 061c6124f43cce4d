{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as exporters, wanted, merged with context %}
{%- from "common/macros.jinja" import deprecated_keys with context %}
{#- Every exporter in pillar `exporters`: installed as configured (exporter.installed),
    or removed with `ensure: absent`. map.jinja has validated the whole mapping
    (opskit.settings) before anything here renders. Options reach the states as data
    (|json); secret options are not rendered at all: exporter.installed reads them on
    the minion from the pillar keys listed in `secrets_from`. #}
{%- for name, options in wanted | dictsort %}
{%-   if options.ensure == "absent" %}

{{ ("exporters-install-" ~ name ~ "-absent") | json }}:
  exporter.absent:
    - name: {{ name | json }}
{%-   else %}
{%-     set nginx = options.get("nginx") or {} %}
{%-     set stub = nginx.get("stub_status", {}) %}
{%-     set needs_nginx = name == "nginx_exporter" and stub is not false and stub is not none
                          and exporters.nginx_package %}
{%-     if needs_nginx %}

exporters-install-nginx-package-installed:
  pkg.installed:
    - name: {{ exporters.nginx_package | json }}
{%-     endif %}

{{ ("exporters-install-" ~ name ~ "-installed") | json }}:
  exporter.installed:
    - name: {{ name | json }}
{%-     for key, value in salt["exporter.without_secrets"](name, options) | dictsort
          if key != "ensure" %}
    - {{ key | json }}: {{ value | json }}
{%-     endfor %}
    - secrets_from: {{ [tplroot ~ ":defaults", tplroot ~ ":" ~ name] | json }}
{%-     if needs_nginx %}
    - require:
      - pkg: exporters-install-nginx-package-installed
{%-     endif %}
{%-   endif %}
{%- endfor %}
{{- deprecated_keys("exporters", merged) }}
