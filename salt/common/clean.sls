{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as common with context %}
# Removes the files `common` manages and the host's mine entry; packages stay (other
# software may need them).
include:
  - .mine.clean

common-clean-roles-file-absent:
  file.absent:
    - name: {{ common.roles_file | json }}
