{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as tuning with context %}
{%- set jm = tuning.jemalloc %}
# Takes every unit and compose service the pillar names off jemalloc.
{%- for unit, conf in jm.units | dictsort %}

{{ ("tuning-jemalloc-clean-" ~ unit ~ "-jemalloc-disabled") | json }}:
  jemalloc.disabled:
    - name: {{ unit | json }}
    - restart: {{ conf.restart | json }}
{%- endfor %}
{%- for file in jm.compose %}

{{ ("tuning-jemalloc-clean-" ~ file ~ "-jemalloc-compose_disabled") | json }}:
  jemalloc.compose_disabled:
    - name: {{ file | json }}
{%- endfor %}
