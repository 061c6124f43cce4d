{%- set tplroot = tpldir.split("/")[0] %}
{%- import_yaml tplroot ~ "/parameters/defaults.yaml" as defaults %}
# Removes every exporter opskit can install (exporter.absent is a no-op for those that
# are not installed), with everything installed for it. nginx itself stays.
{%- for name in defaults.exporters.versions | sort %}

{{ ("exporters-install-clean-" ~ name ~ "-absent") | json }}:
  exporter.absent:
    - name: {{ name | json }}
{%- endfor %}
