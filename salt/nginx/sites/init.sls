{#- Sites listed in pillar `nginx:sites` (other formulas use the macros directly). #}
{%- from "nginx/map.jinja" import mapdata as nginx with context %}
{%- from "nginx/macros.jinja" import nginx_site, nginx_site_absent with context %}
{%- if nginx.sites is not mapping %}
{{ raise("pillar nginx:sites must map site names to {source, context} or {contents}") }}
{%- endif %}
{%- for name, site in nginx.sites | dictsort %}
{%- if site is not mapping %}
{{ raise("pillar nginx:sites:" ~ name ~ " must be a mapping") }}
{%- elif site.get("absent") %}
{{ nginx_site_absent(name) }}
{%- else %}
{{ nginx_site(name, source=site.get("source"), contents=site.get("contents"), context=site.get("context", {})) }}
{%- endif %}
{%- endfor %}
