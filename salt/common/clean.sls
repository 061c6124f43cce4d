{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as common with context %}
# Removes the files `common` manages; packages stay (other software may need them).

common-clean-roles-file-absent:
  file.absent:
    - name: {{ common.roles_file | json }}
