{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as ts with context %}
{%- from "nginx/map.jinja" import mapdata as nginx with context %}
# Removes what the formula put on the host: the nginx site (nginx is reloaded after
# `nginx -t` if it runs; nginx itself stays, see nginx.clean), the service (stopped and
# disabled) or the compose project (`down`), its unit files and jemalloc drop-in or
# override, the env file with the secrets, and the release directory. The service
# user, Seafile's data and the thumbnail cache and logs under its directories stay.
{%- if not ts.configured %}

thumbnail-server-clean-pillar-none-test-succeed_without_changes:
  test.succeed_without_changes:
    - name: No pillar thumbnail_server on this host; nothing to clean
{%- else %}
{%-   if ts.nginx.enabled %}

thumbnail-server-clean-site-file-absent:
  file.absent:
    - name: {{ nginx.sites_dir }}/{{ ts.nginx.site_name }}.conf

thumbnail-server-clean-nginx-reload-cmd-run:
  cmd.run:
    - name: {{ nginx.binary }} -t -q && systemctl reload {{ nginx.service }}
    - onlyif: systemctl is-active --quiet {{ nginx.service }}
    - onchanges:
      - file: thumbnail-server-clean-site-file-absent
{%-   endif %}
{%-   if ts.mode == "systemd" %}
{%-     set sd = ts.systemd %}

thumbnail-server-clean-service-service-dead:
  service.dead:
    - names:
      - {{ sd.guard_unit }}
      - {{ sd.unit }}
    - enable: false
{%-     if ts.nginx.enabled %}
    - require:
      - file: thumbnail-server-clean-site-file-absent
{%-     endif %}

thumbnail-server-clean-files-file-absent:
  file.absent:
    - names:
      - /etc/systemd/system/{{ sd.unit }}
      - /etc/systemd/system/{{ sd.unit }}.d
      - /etc/systemd/system/{{ sd.guard_unit }}
      - /usr/local/lib/opskit/thumbnail-server-memory-guard
      - {{ ts.config_dir }}
      - {{ sd.install_dir }}
    - require:
      - service: thumbnail-server-clean-service-service-dead

thumbnail-server-clean-systemd-reload-module-run:
  module.run:
    - service.systemctl_reload: []
    - onchanges:
      - file: thumbnail-server-clean-files-file-absent
{%-   else %}
{%-     set dk = ts.docker %}

thumbnail-server-clean-compose-down-cmd-run:
  cmd.run:
    - name: {{ (dk.compose_command + dk.compose_args + ["down"]) | join(" ") }}
    - cwd: {{ dk.project_dir }}
    - onlyif: test -f {{ dk.compose_file }} && command -v {{ dk.compose_command[0] }}

thumbnail-server-clean-jemalloc-compose_disabled:
  jemalloc.compose_disabled:
    - name: {{ dk.override_file }}
    - require:
      - cmd: thumbnail-server-clean-compose-down-cmd-run

thumbnail-server-clean-files-file-absent:
  file.absent:
    - names:
      - {{ dk.compose_file }}
      - {{ dk.sites_dir | json }}
      - {{ ts.config_dir }}
    - require:
      - cmd: thumbnail-server-clean-compose-down-cmd-run
{%-   endif %}
{%- endif %}
