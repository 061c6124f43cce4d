{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as anubis with context %}
{%- from "nginx/macros.jinja" import nginx_site with context %}
{#- One nginx site per instance, added through the nginx formula (tested with
    `nginx -t` before it replaces the live file; nginx is reloaded, never restarted).
    A site goes live only after its instance answers /healthz. #}
{%- if anubis.instances %}
include:
  - nginx
  - {{ tplroot }}.service
{%-   for inst in anubis.instances %}
{%-     set context = {
          "name": inst.name,
          "site": inst.site,
          "anubis_url": inst.anubis_url,
          "upstream": inst.upstream,
        } %}
{{ nginx_site(inst.nginx_site,
              source="salt://" ~ tplroot ~ "/files/site-" ~ inst.mode ~ ".conf.jinja",
              context=context,
              require=[{"anubis": "anubis-service-healthz-" ~ inst.name ~ "-anubis-healthy"}]) }}
{%-   endfor %}
{%- endif %}
