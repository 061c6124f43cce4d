{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as exporters, wanted with context %}
{%- do salt["exporter.validate"](wanted) %}
{#- Every exporter in pillar `exporters`: installed as configured (exporter.installed),
    or removed with `ensure: absent`. exporter.validate checks the whole mapping before
    anything here renders: a bad value fails the render with every problem listed,
    each naming the exporter and the option, and nothing is applied.
    Secret options are not rendered into state arguments: exporter.installed reads them
    on the minion from the pillar keys listed in `secrets_from`. #}
{%- for name, options in wanted | dictsort %}
{%-   if options.get("ensure", "present") == "absent" %}

{{ ("exporters-install-" ~ name ~ "-absent") | json }}:
  exporter.absent:
    - name: {{ name | json }}
{%-   else %}
{%-     set nginx = options.get("nginx") or {} %}
{%-     set needs_nginx = name == "nginx_exporter" and nginx.get("stub_status", {}) is not false
                          and exporters.nginx_package %}
{%-     if needs_nginx %}

exporters-install-nginx-package-installed:
  pkg.installed:
    - name: {{ exporters.nginx_package | json }}
{%-     endif %}

{{ ("exporters-install-" ~ name ~ "-installed") | json }}:
  exporter.installed:
    - name: {{ name | json }}
{%-     for key, value in salt["exporter.without_secrets"](options) | dictsort
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
