{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as tuning with context %}
{%- set jm = tuning.jemalloc %}
# Takes every unit and compose service the pillar names off jemalloc.
{%- for unit, conf in jm.units | dictsort %}
{%-   set name = salt["jemalloc.unit_name"](unit) %}

tuning-jemalloc-clean-{{ name }}-jemalloc-disabled:
  jemalloc.disabled:
    - name: {{ name }}
    - restart: {{ (conf or {}).get("restart", jm.restart) | json }}
{%- endfor %}
{%- for file in jm.compose %}

tuning-jemalloc-clean-{{ file }}-jemalloc-compose_disabled:
  jemalloc.compose_disabled:
    - name: {{ file }}
{%- endfor %}
