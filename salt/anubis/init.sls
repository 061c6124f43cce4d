{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as anubis with context %}
# Anubis instances (anubis@<name>) with nginx in front, as pillar anubis:instances says.
{%- if anubis.instances %}
include:
  - nginx
  - .package
  - .config
  - .service
  - .sites
{%- else %}

anubis-instances-none-test-succeed_without_changes:
  test.succeed_without_changes:
    - name: No Anubis instances in pillar anubis:instances; nothing to do
{%- endif %}
