{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as anubis with context %}
{%- from "nginx/macros.jinja" import nginx_site with context %}
{#- One nginx site per instance, added through the nginx formula (tested with
    `nginx -t` before it replaces the live file; nginx is reloaded, never restarted).
    A site goes live only after its instance answers /healthz. The template's context
    holds numbers, booleans and values anubis.plan quoted with the nginx rule
    (opskit_formats.nginx_param). #}
{%- if anubis.instances %}
include:
  - nginx
  - {{ (tplroot ~ ".service") | json }}
{%-   for inst in anubis.instances %}
{{ nginx_site(inst.nginx_site,
              source="salt://" ~ tplroot ~ "/files/site-" ~ inst.mode ~ ".conf.jinja",
              context=inst.site,
              require=[{"anubis": "anubis-service-healthz-" ~ inst.name ~ "-anubis-healthy"}]) }}
{%-   endfor %}
{%- endif %}
