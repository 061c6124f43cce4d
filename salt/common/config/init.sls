{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as common with context %}

common-config-motd-file-managed:
  file.managed:
    - name: {{ common.motd_file | json }}
    - source: {{ ("salt://" ~ tplroot ~ "/files/motd.jinja") | json }}
    - template: jinja
    - mode: "0644"
    - user: root
    - group: root
    - context:
        motd: {{ common.motd | json }}
        roles: {{ common.roles | json }}

common-config-roles-file-serialize:
  file.serialize:
    - name: {{ common.roles_file | json }}
    - dataset:
        roles: {{ common.roles | json }}
    - serializer: json
    - makedirs: true
    - mode: "0644"
    - user: root
    - group: root
