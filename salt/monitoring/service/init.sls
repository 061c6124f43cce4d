{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as monitoring with context %}
# Both daemons run and are enabled; a changed configuration is reloaded (SIGHUP through
# systemctl reload), never restarted, and the reload is verified.
include:
  - {{ (tplroot ~ ".config") | json }}

monitoring-service-prometheus-service-running:
  service.running:
    - name: {{ monitoring.prometheus.service | json }}
    - enable: true
    - require:
      - pkg: monitoring-package-install-pkg-installed

monitoring-service-prometheus-monitoring-reloaded:
  monitoring.reloaded:
    - name: {{ monitoring.prometheus.service | json }}
    - url: {{ monitoring.prometheus.url | json }}
    - metric: prometheus_config
    - files:
      - {{ monitoring.prometheus.config_file | json }}
      - {{ (monitoring.prometheus.rules_dir ~ "/opskit.yml") | json }}
      - {{ (monitoring.prometheus.rules_dir ~ "/site.yml") | json }}
    - timeout: {{ monitoring.prometheus.reload_timeout | json }}
    - require:
      - service: monitoring-service-prometheus-service-running
    - watch:
      - file: monitoring-config-prometheus-file-managed
      - file: monitoring-config-rules-opskit-file-managed
      - file: monitoring-config-rules-site-file-managed

monitoring-service-alertmanager-service-running:
  service.running:
    - name: {{ monitoring.alertmanager.service | json }}
    - enable: true
    - require:
      - pkg: monitoring-package-install-pkg-installed

monitoring-service-alertmanager-monitoring-reloaded:
  monitoring.reloaded:
    - name: {{ monitoring.alertmanager.service | json }}
    - url: {{ monitoring.alertmanager.url | json }}
    - metric: alertmanager_config
    - files:
      - {{ monitoring.alertmanager.config_file | json }}
    - timeout: {{ monitoring.alertmanager.reload_timeout | json }}
    - require:
      - service: monitoring-service-alertmanager-service-running
    - watch:
      - file: monitoring-config-alertmanager-file-managed
