{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as anubis with context %}
{%- set package_state = {"pkg": "anubis-package-install-pkg-installed"}
      if anubis.release.method == "deb" else {"file": "anubis-package-unit-file-symlink"} %}
{%- if anubis.instances %}
include:
  - {{ (tplroot ~ ".config") | json }}
  # Publishes the instances' metrics targets (opskit.targets) to the mine at the end.
  - common.mine
{%-   for inst in anubis.instances %}

# Restarted when its settings, key, drop-in or the package change (Anubis has no reload).
{{ ("anubis-service-running-" ~ inst.name ~ "-service-running") | json }}:
  service.running:
    - name: {{ inst.unit | json }}
    - enable: true
    - require:
      - {{ package_state | json }}
    - watch:
      - {{ package_state | json }}
      - {{ {"anubis": "anubis-config-env-" ~ inst.name ~ "-anubis-env_managed"} | json }}
      - {{ {"file": "anubis-config-policy-" ~ inst.name ~ "-file-serialize"} | json }}
      - {{ {"anubis": "anubis-config-key-" ~ inst.name ~ "-anubis-key_managed"} | json }}
      - {{ {"file": "anubis-config-dropin-" ~ inst.name ~ "-file-managed"} | json }}

# Upstream's metrics listener answers /healthz with 200 "OK" once the instance serves.
{{ ("anubis-service-healthz-" ~ inst.name ~ "-anubis-healthy") | json }}:
  anubis.healthy:
    - name: {{ inst.unit | json }}
    - url: {{ inst.health_url | json }}
    - timeout: {{ anubis.health_timeout | json }}
    - require:
      - {{ {"service": "anubis-service-running-" ~ inst.name ~ "-service-running"} | json }}
{%-   endfor %}
{%- endif %}
