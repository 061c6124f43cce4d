{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as anubis with context %}
{%- set binary = anubis.install_dir ~ "/" ~ anubis.release.top_dir ~ "/bin/anubis"
      if anubis.release.method == "tarball" else "" %}
{%- if anubis.instances %}
include:
  - {{ tplroot }}.package

anubis-config-dir-file-directory:
  file.directory:
    - name: {{ anubis.config_dir }}
    - mode: "0755"
    - user: root
    - group: root

anubis-config-key-dir-file-directory:
  file.directory:
    - name: {{ anubis.key_dir }}
    - mode: "0700"
    - user: root
    - group: root
    - require:
      - file: anubis-config-dir-file-directory
{%-   for inst in anubis.instances %}

anubis-config-env-{{ inst.name }}-file-managed:
  file.managed:
    - name: {{ inst.env_file }}
    - source: salt://{{ tplroot }}/files/instance.env.jinja
    - template: jinja
    - mode: "0640"
    - user: root
    - group: root
    - context:
        name: {{ inst.name | json }}
        mode: {{ inst.mode | json }}
        variables: {{ inst.env | json }}
    - require:
      - file: anubis-config-dir-file-directory

anubis-config-policy-{{ inst.name }}-file-serialize:
  file.serialize:
    - name: {{ inst.policy_file }}
    - dataset: {{ inst.policy | json }}
    - serializer: yaml
    - mode: "0644"
    - user: root
    - group: root
    - require:
      - file: anubis-config-dir-file-directory

# From pillar (the CMDB) when it holds a key; otherwise generated once and kept.
anubis-config-key-{{ inst.name }}-anubis-key_managed:
  anubis.key_managed:
    - name: {{ inst.key_file }}
    - pillar_path: {{ inst.key_pillar_path }}
    - require:
      - file: anubis-config-key-dir-file-directory

anubis-config-dropin-{{ inst.name }}-file-managed:
  file.managed:
    - name: {{ inst.dropin_file }}
    - source: salt://{{ tplroot }}/files/dropin.conf.jinja
    - template: jinja
    - makedirs: true
    - mode: "0644"
    - user: root
    - group: root
    - context:
        name: {{ inst.name | json }}
        key_file: {{ inst.key_file | json }}
        binary: {{ binary | json }}
{%-   endfor %}

# What anubis.targets publishes to the mine (Prometheus file_sd shape).
anubis-config-registry-file-serialize:
  file.serialize:
    - name: {{ anubis.registry_file }}
    - dataset:
        targets: {{ anubis.targets | json }}
    - serializer: json
    - mode: "0644"
    - user: root
    - group: root
    - require:
      - file: anubis-config-dir-file-directory
{%- endif %}
