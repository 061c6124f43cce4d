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
{%-   for inst in anubis.instances %}

# Read by upstream's unit (EnvironmentFile=/etc/anubis/%i.env); every value quoted for
# systemd by the module (opskit_formats). Values from pillar `env` are hidden in changes.
{{ ("anubis-config-env-" ~ inst.name ~ "-anubis-env_managed") | json }}:
  anubis.env_managed:
    - name: {{ inst.env_file | json }}
    - variables: {{ inst.env | json }}
    - extra: {{ inst.user_env | json }}
    - require:
      - file: anubis-config-dir-file-directory

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
{{ ("anubis-config-key-" ~ inst.name ~ "-anubis-key_managed") | json }}:
  anubis.key_managed:
    - name: {{ inst.key_file | json }}
    - pillar_path: {{ inst.key_pillar_path | json }}
    - require:
      - file: anubis-config-key-dir-file-directory

# Rendered by anubis.plan with opskit_formats (the systemd quoting rule).
{{ ("anubis-config-dropin-" ~ inst.name ~ "-file-managed") | json }}:
  file.managed:
    - name: {{ inst.dropin_file | json }}
    - contents: {{ inst.dropin | json }}
    - makedirs: true
    - mode: "0644"
    - user: root
    - group: root
{%-   endfor %}

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
