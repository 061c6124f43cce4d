{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as ts with context %}
{%- from "nginx/macros.jinja" import nginx_site with context %}
{#- The thumbnail host's nginx site, through the nginx formula: tested with `nginx -t`
    before it replaces the live file, nginx reloaded (never restarted) only after a
    final `nginx -t`. It goes live only once the service answers /ping. #}
{%- if ts.configured and ts.nginx.enabled %}
include:
  - nginx
  - {{ tplroot }}.service
{%-   set ngx = ts.nginx %}
{%-   set context = {
        "backend": ts.backend,
        "site_root": ts.seafile.site_root,
        "listen": ngx.listen,
        "server_name": ngx.server_name,
        "access_log": ngx.access_log,
        "error_log": ngx.error_log,
        "proxy_connect_timeout": ngx.proxy_connect_timeout,
        "proxy_read_timeout": ngx.proxy_read_timeout,
        "proxy_send_timeout": ngx.proxy_send_timeout,
      } %}
{{ nginx_site(ngx.site_name,
              source="salt://" ~ tplroot ~ "/files/site.conf.jinja",
              context=context,
              require=[{"thumbnail_server": "thumbnail-server-service-health-thumbnail_server-healthy"}]) }}
{%- endif %}
