{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as monitoring with context %}

monitoring-service-clean-service-dead:
  service.dead:
    - names:
      - {{ monitoring.prometheus.service | json }}
      - {{ monitoring.alertmanager.service | json }}
    - enable: false
