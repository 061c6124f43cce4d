{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as anubis with context %}
{%- set package_state = {"pkg": "anubis-package-install-pkg-installed"}
      if anubis.release.get("method") == "deb" else {"file": "anubis-package-unit-file-symlink"} %}
{%- set docker = anubis.runtime == "docker" %}
{%- if anubis.instances %}
include:
  - {{ (tplroot ~ ".config") | json }}
  # Publishes the instances' metrics targets (opskit.targets) to the mine at the end.
  - common.mine
{%-   for inst in anubis.instances %}
{%-     if docker %}
{%-       set service_req = {"anubis": "anubis-service-container-" ~ inst.name ~ "-anubis-container_running"} %}

# Runtime docker: started with the compose file as it is; recreated when its env file,
# policy or key changes (Anubis reads them only at start). Other instances stay up.
{{ ("anubis-service-container-" ~ inst.name ~ "-anubis-container_running") | json }}:
  anubis.container_running:
    - name: {{ inst.name | json }}
    - compose_argv: {{ anubis.docker.compose_argv | json }}
    - compose_file: {{ anubis.docker.compose_file | json }}
    - require:
      - file: anubis-config-compose-file-managed
      - {{ {"anubis": "anubis-config-store-" ~ inst.name ~ "-anubis-store_dir_managed"} | json }}
    - watch:
      - {{ {"anubis": "anubis-config-env-" ~ inst.name ~ "-anubis-env_managed"} | json }}
      - {{ {"file": "anubis-config-policy-" ~ inst.name ~ "-file-serialize"} | json }}
      - {{ {"anubis": "anubis-config-key-" ~ inst.name ~ "-anubis-key_managed"} | json }}
{%-     else %}
{%-       set service_req = {"service": "anubis-service-running-" ~ inst.name ~ "-service-running"} %}

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
{%-     endif %}

# Upstream's metrics listener answers /healthz with 200 "OK" once the instance serves.
{{ ("anubis-service-healthz-" ~ inst.name ~ "-anubis-healthy") | json }}:
  anubis.healthy:
    - name: {{ (("anubis container " ~ inst.name) if docker else inst.unit) | json }}
    - url: {{ inst.health_url | json }}
    - timeout: {{ anubis.health_timeout | json }}
{%-     if docker %}
    - logs_argv: {{ (anubis.docker.compose_argv + ["logs", "--no-color", "--tail", "15", inst.name]) | json }}
{%-     endif %}
    - require:
      - {{ service_req | json }}
{%-   endfor %}
{%- endif %}
