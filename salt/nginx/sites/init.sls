{#- Sites listed in pillar `nginx:sites` (other formulas use the macros directly): a
    template of the state tree (`source`) rendered with `context`, whose strings the
    schema (_utils/opskit_settings_nginx.py) has quoted as nginx parameters. Raw text
    from pillar (`contents`) is refused before this renders. #}
{%- from "nginx/map.jinja" import mapdata as nginx with context %}
{%- from "nginx/macros.jinja" import nginx_site, nginx_site_absent with context %}
{%- for name, site in nginx.sites | dictsort %}
{%- if site.absent %}
{{ nginx_site_absent(name) }}
{%- else %}
{{ nginx_site(name, source=site.source, context=site.context) }}
{%- endif %}
{%- endfor %}
