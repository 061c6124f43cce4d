{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as anubis, merged with context %}
{%- from "common/macros.jinja" import deprecated_keys with context %}
# Anubis instances (anubis@<name>) with nginx in front, as pillar anubis:instances says.
{{- deprecated_keys("anubis", merged) }}
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
