{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as ts with context %}
{%- from "nginx/macros.jinja" import nginx_site with context %}
{#- The thumbnail host's nginx site (rendered by thumbnail_server.plan through
    opskit_formats), through the nginx formula: tested with `nginx -t` before it
    replaces the live file, nginx reloaded (never restarted) only after a final
    `nginx -t`. It goes live only once the service answers its health URL. #}
{%- if ts.configured and ts.nginx.enabled %}
include:
  - nginx
  - {{ (tplroot ~ ".service") | json }}
{{ nginx_site(ts.nginx.site_name,
              contents=ts.site,
              require=[{"thumbnail_server": "thumbnail-server-service-health-thumbnail_server-healthy"}]) }}
{%- endif %}
