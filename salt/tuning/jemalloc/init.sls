{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as tuning with context %}
{%- set jm = tuning.jemalloc %}
{%- for unit, conf in jm.units | dictsort %}
{%-   set conf = conf or {} %}
{%-   set name = salt["jemalloc.unit_name"](unit) %}
{%-   set malloc_conf = conf.get("malloc_conf", jm.malloc_conf) %}
{#-   Refuse a bad MALLOC_CONF at render time, before any state of the run is applied. #}
{%-   do salt["jemalloc.validate_malloc_conf"](malloc_conf) %}
{%-   if conf.get("enabled", true) %}

tuning-jemalloc-{{ name }}-jemalloc-enabled:
  jemalloc.enabled:
    - name: {{ name }}
    - malloc_conf: {{ malloc_conf | json }}
    - restart: {{ conf.get("restart", jm.restart) | json }}
    - verify_timeout: {{ conf.get("verify_timeout", jm.verify_timeout) | json }}
{%-     if conf.get("require_sls") %}
    - require:
{%-       for sls in conf.require_sls %}
      - sls: {{ sls }}
{%-       endfor %}
{%-     endif %}
{%-   else %}

tuning-jemalloc-{{ name }}-jemalloc-disabled:
  jemalloc.disabled:
    - name: {{ name }}
    - restart: {{ conf.get("restart", jm.restart) | json }}
    - verify_timeout: {{ conf.get("verify_timeout", jm.verify_timeout) | json }}
{%-   endif %}
{%- endfor %}
{%- for file, conf in jm.compose | dictsort %}
{%-   set malloc_conf = conf.get("malloc_conf", jm.malloc_conf) %}
{%-   do salt["jemalloc.compose_override"](conf.services, malloc_conf) %}
{%-   if conf.get("enabled", true) %}

tuning-jemalloc-{{ file }}-jemalloc-compose_enabled:
  jemalloc.compose_enabled:
    - name: {{ file }}
    - services: {{ conf.services | json }}
    - malloc_conf: {{ malloc_conf | json }}
{%-   else %}

tuning-jemalloc-{{ file }}-jemalloc-compose_disabled:
  jemalloc.compose_disabled:
    - name: {{ file }}
{%-   endif %}
{%- endfor %}
