{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as anubis with context %}
{%- if anubis.instances %}
include:
  - {{ (tplroot ~ ".package") | json }}

anubis-config-dir-file-directory:
  file.directory:
    - name: {{ anubis.config_dir | json }}
    - mode: "0755"
    - user: root
    - group: root

anubis-config-key-dir-file-directory:
  file.directory:
    - name: {{ anubis.key_dir | json }}
    - mode: "0700"
    - user: root
    - group: root
    - require:
      - file: anubis-config-dir-file-directory
{%-   if anubis.runtime == "docker" %}

# The compose file and the instances' env files (compose reads them as root).
anubis-config-project-dir-file-directory:
  file.directory:
    - name: {{ anubis.docker.project_dir | json }}
    - mode: "0700"
    - user: root
    - group: root
    - makedirs: true
{%-   endif %}
{%-   for inst in anubis.instances %}
{%-     if anubis.runtime == "docker" %}

# Runtime docker: read by docker compose (env_file:), each value quoted by the module
# (opskit_formats.compose_env_file). Values from pillar `env` are hidden in changes.
{{ ("anubis-config-env-" ~ inst.name ~ "-anubis-env_managed") | json }}:
  anubis.env_managed:
    - name: {{ inst.env_file | json }}
    - variables: {{ inst.env | json }}
    - extra: {{ inst.user_env | json }}
    - syntax: compose
    - require:
      - file: anubis-config-project-dir-file-directory

# The bbolt store, mounted into the container; its user (docker:user/group) writes it.
{{ ("anubis-config-store-" ~ inst.name ~ "-anubis-store_dir_managed") | json }}:
  anubis.store_dir_managed:
    - name: {{ inst.store_dir | json }}
    - owner: {{ inst.key_owner | json }}
{%-     else %}

# Read by upstream's unit (EnvironmentFile=/etc/anubis/%i.env); every value quoted for
# systemd by the module (opskit_formats). Values from pillar `env` are hidden in changes.
{{ ("anubis-config-env-" ~ inst.name ~ "-anubis-env_managed") | json }}:
  anubis.env_managed:
    - name: {{ inst.env_file | json }}
    - variables: {{ inst.env | json }}
    - extra: {{ inst.user_env | json }}
    - require:
      - file: anubis-config-dir-file-directory
{%-     endif %}

{{ ("anubis-config-policy-" ~ inst.name ~ "-file-serialize") | json }}:
  file.serialize:
    - name: {{ inst.policy_file | json }}
    - dataset: {{ inst.policy | json }}
    - serializer: yaml
    - mode: "0644"
    - user: root
    - group: root
    - require:
      - file: anubis-config-dir-file-directory

# From pillar (the CMDB) when it holds a key; otherwise generated once and kept. The
# module reads the key from pillar on the minion: it is never a state argument.
# Runtime docker: owned by the container's user, mounted read-only into its container.
{{ ("anubis-config-key-" ~ inst.name ~ "-anubis-key_managed") | json }}:
  anubis.key_managed:
    - name: {{ inst.key_file | json }}
    - pillar_path: {{ inst.key_pillar_path | json }}
    - owner: {{ inst.key_owner | json }}
    - require:
      - file: anubis-config-key-dir-file-directory
{%-     if inst.dropin %}

# Rendered by anubis.plan with opskit_formats (the systemd quoting rule).
{{ ("anubis-config-dropin-" ~ inst.name ~ "-file-managed") | json }}:
  file.managed:
    - name: {{ inst.dropin_file | json }}
    - contents: {{ inst.dropin | json }}
    - makedirs: true
    - mode: "0644"
    - user: root
    - group: root
{%-     endif %}
{%-   endfor %}
{%-   if anubis.runtime == "docker" %}

# One service per instance, rendered by anubis.plan with opskit_formats (YAML).
anubis-config-compose-file-managed:
  file.managed:
    - name: {{ anubis.docker.compose_file | json }}
    - contents: {{ anubis.docker.compose | json }}
    - mode: "0600"
    - user: root
    - group: root
    - require:
      - file: anubis-config-project-dir-file-directory
{%-   endif %}

# What anubis.targets publishes to the mine (Prometheus file_sd shape).
anubis-config-registry-file-serialize:
  file.serialize:
    - name: {{ anubis.registry_file | json }}
    - dataset:
        targets: {{ anubis.targets | json }}
    - serializer: json
    - mode: "0644"
    - user: root
    - group: root
    - require:
      - file: anubis-config-dir-file-directory
{%- endif %}
