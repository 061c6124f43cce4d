{#- Units and compose services under jemalloc. Every value comes from the settings
    opskit.settings checked (map.jinja) and reaches the SLS only through | json. #}
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as tuning with context %}
{%- set jm = tuning.jemalloc %}
{%- for unit, conf in jm.units | dictsort %}
{%-   if conf.enabled %}

{{ ("tuning-jemalloc-" ~ unit ~ "-jemalloc-enabled") | json }}:
  jemalloc.enabled:
    - name: {{ unit | json }}
    - malloc_conf: {{ conf.malloc_conf | json }}
    - restart: {{ conf.restart | json }}
    - verify_timeout: {{ conf.verify_timeout | json }}
{%-     if conf.require_sls %}
    - require:
{%-       for sls in conf.require_sls %}
      - sls: {{ sls | json }}
{%-       endfor %}
{%-     endif %}
{%-   else %}

{{ ("tuning-jemalloc-" ~ unit ~ "-jemalloc-disabled") | json }}:
  jemalloc.disabled:
    - name: {{ unit | json }}
    - restart: {{ conf.restart | json }}
    - verify_timeout: {{ conf.verify_timeout | json }}
{%-   endif %}
{%- endfor %}
{%- for file, conf in jm.compose | dictsort %}
{%-   if conf.enabled %}

{{ ("tuning-jemalloc-" ~ file ~ "-jemalloc-compose_enabled") | json }}:
  jemalloc.compose_enabled:
    - name: {{ file | json }}
    - services: {{ conf.services | json }}
    - malloc_conf: {{ conf.malloc_conf | json }}
{%-   else %}

{{ ("tuning-jemalloc-" ~ file ~ "-jemalloc-compose_disabled") | json }}:
  jemalloc.compose_disabled:
    - name: {{ file | json }}
{%-   endif %}
{%- endfor %}
