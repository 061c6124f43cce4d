{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as anubis with context %}
{%- set package_state = {"pkg": "anubis-package-install-pkg-installed"}
      if anubis.release.method == "deb" else {"file": "anubis-package-unit-file-symlink"} %}
{%- if anubis.instances %}
include:
  - {{ tplroot }}.config
  # Publishes the instances' metrics targets (opskit.targets) to the mine at the end.
  - common.mine
{%-   for inst in anubis.instances %}

# Restarted when its settings, key, drop-in or the package change (Anubis has no reload).
anubis-service-running-{{ inst.name }}-service-running:
  service.running:
    - name: {{ inst.unit }}
    - enable: true
    - require:
      - {{ package_state | json }}
    - watch:
      - {{ package_state | json }}
      - file: anubis-config-env-{{ inst.name }}-file-managed
      - file: anubis-config-policy-{{ inst.name }}-file-serialize
      - anubis: anubis-config-key-{{ inst.name }}-anubis-key_managed
      - file: anubis-config-dropin-{{ inst.name }}-file-managed

# Upstream's metrics listener answers /healthz with 200 "OK" once the instance serves.
anubis-service-healthz-{{ inst.name }}-anubis-healthy:
  anubis.healthy:
    - name: {{ inst.unit }}
    - url: {{ inst.health_url }}
    - timeout: {{ anubis.health_timeout }}
    - require:
      - service: anubis-service-running-{{ inst.name }}-service-running
{%-   endfor %}
{%- endif %}
