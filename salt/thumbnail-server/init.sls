{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as ts with context %}
# Seafile 13 thumbnail-server host (systemd or docker compose mode) with nginx in front,
# as pillar thumbnail_server says.
{%- if ts.configured %}
include:
  - .package
  - .config
  - .service
  - .sites
{%- else %}

thumbnail-server-pillar-none-test-succeed_without_changes:
  test.succeed_without_changes:
    - name: No pillar thumbnail_server on this host; nothing to do
{%- endif %}
