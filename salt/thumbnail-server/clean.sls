{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as ts with context %}
{%- from "nginx/map.jinja" import mapdata as nginx with context %}
# Removes what the formula put on the host: the nginx site (nginx is reloaded after
# `nginx -t` if it runs; nginx itself stays, see nginx.clean), the service (stopped and
# disabled) or the compose project (`down`), its unit files and jemalloc drop-in or
# override, the env file with the secrets, and the release directory. The service
# user, Seafile's data and the thumbnail cache and logs under its directories stay.
# Commands are argv lists or module calls: no pillar value reaches a shell.
{%- if not ts.configured %}

thumbnail-server-clean-pillar-none-test-succeed_without_changes:
  test.succeed_without_changes:
    - name: No pillar thumbnail_server on this host; nothing to clean
{%- else %}
{%-   if ts.nginx.enabled %}

thumbnail-server-clean-site-file-absent:
  file.absent:
    - name: {{ (nginx.sites_dir ~ "/" ~ ts.nginx.site_name ~ ".conf") | json }}

thumbnail-server-clean-nginx-test-module-run:
  module.run:
    - cmd.run_all:
      - cmd: {{ [nginx.binary, "-t", "-q"] | json }}
      - python_shell: false
    - onchanges:
      - file: thumbnail-server-clean-site-file-absent
    - onlyif:
      - fun: service.status
        name: {{ nginx.service | json }}

thumbnail-server-clean-nginx-reload-module-run:
  module.run:
    - service.reload:
      - name: {{ nginx.service | json }}
    - onchanges:
      - module: thumbnail-server-clean-nginx-test-module-run
{%-   endif %}
{%-   if ts.mode == "systemd" %}
{%-     set sd = ts.systemd %}

thumbnail-server-clean-service-service-dead:
  service.dead:
    - names: {{ [sd.guard_unit, sd.unit] | json }}
    - enable: false
{%-     if ts.nginx.enabled %}
    - require:
      - file: thumbnail-server-clean-site-file-absent
{%-     endif %}

thumbnail-server-clean-files-file-absent:
  file.absent:
    - names: {{ ["/etc/systemd/system/" ~ sd.unit, "/etc/systemd/system/" ~ sd.unit ~ ".d",
                 "/etc/systemd/system/" ~ sd.guard_unit, sd.guard_script, ts.config_dir,
                 sd.install_dir] | json }}
    - require:
      - service: thumbnail-server-clean-service-service-dead

thumbnail-server-clean-systemd-reload-module-run:
  module.run:
    - service.systemctl_reload: []
    - onchanges:
      - file: thumbnail-server-clean-files-file-absent
{%-   else %}
{%-     set dk = ts.docker %}

thumbnail-server-clean-compose-absent:
  thumbnail_server.compose_absent:
    - name: {{ dk.project_dir | json }}
    - settings: {{ ts | json }}

thumbnail-server-clean-jemalloc-compose_disabled:
  jemalloc.compose_disabled:
    - name: {{ dk.override_file | json }}
    - require:
      - thumbnail_server: thumbnail-server-clean-compose-absent

thumbnail-server-clean-files-file-absent:
  file.absent:
    - names: {{ [dk.compose_file, dk.sites_dir, ts.config_dir] | json }}
    - require:
      - thumbnail_server: thumbnail-server-clean-compose-absent
{%-   endif %}
{%- endif %}
