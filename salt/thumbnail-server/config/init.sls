{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as ts with context %}
{#- Every value reaches this file through | json; unit files, sites and the compose
    file were rendered by thumbnail_server.plan through opskit_formats (one quoting rule
    per format) and arrive here as contents. #}
{%- if ts.configured %}
include:
  - {{ (tplroot ~ ".package") | json }}

# A directory of its own (0700, root); one that holds other files is refused.
thumbnail-server-config-dir-thumbnail_server-config_dir:
  thumbnail_server.config_dir:
    - name: {{ ts.config_dir | json }}

# The service's environment, secrets included: mode 0600, root. The secrets and the env
# values come from pillar on the minion; they are not in these states.
thumbnail-server-config-env-thumbnail_server-env_file:
  thumbnail_server.env_file:
    - name: {{ ts.env_file | json }}
    - settings: {{ ts | json }}
    - require:
      - thumbnail_server: thumbnail-server-config-dir-thumbnail_server-config_dir
{%-   if ts.mode == "systemd" %}
{%-     set sd = ts.systemd %}

thumbnail-server-config-dirs-file-directory:
  file.directory:
    - names: {{ [sd.log_dir, sd.thumbnail_root] | json }}
    - mode: "0750"
    - user: {{ sd.user | json }}
    - group: {{ sd.group | json }}
    - makedirs: true
{%-     if sd.manage_user %}
    - require:
      - user: thumbnail-server-package-user-user-present
{%-     endif %}

# No secrets in the unit: systemd reads them from the env file (as root) when it starts
# the service.
thumbnail-server-config-unit-file-managed:
  file.managed:
    - name: {{ ("/etc/systemd/system/" ~ sd.unit) | json }}
    - contents: {{ sd.unit_file | json }}
    - mode: "0644"
    - user: root
    - group: root

thumbnail-server-config-memory-guard-script-file-managed:
  file.managed:
    - name: {{ sd.guard_script | json }}
    - source: {{ ("salt://" ~ tplroot ~ "/files/memory-guard.py") | json }}
    - makedirs: true
    - mode: "0755"
    - user: root
    - group: root
{%-     if sd.memory_guard.enabled %}

thumbnail-server-config-memory-guard-unit-file-managed:
  file.managed:
    - name: {{ ("/etc/systemd/system/" ~ sd.guard_unit) | json }}
    - contents: {{ sd.guard_unit_file | json }}
    - mode: "0644"
    - user: root
    - group: root
{%-     endif %}

thumbnail-server-config-systemd-reload-module-run:
  module.run:
    - service.systemctl_reload: []
    - onchanges:
      - file: thumbnail-server-config-unit-file-managed
{%-     if sd.memory_guard.enabled %}
      - file: thumbnail-server-config-memory-guard-unit-file-managed
{%-     endif %}
{%-   else %}
{%-     set dk = ts.docker %}

thumbnail-server-config-project-dir-file-directory:
  file.directory:
    - name: {{ dk.project_dir | json }}
    - mode: "0755"
    - user: root
    - group: root
    - makedirs: true

# The site of the container's own nginx (IPv4 backend, the host site's timeouts),
# mounted read-only, with its directory, over the image's sites directory.
thumbnail-server-config-container-site-file-managed:
  file.managed:
    - name: {{ dk.container_site | json }}
    - contents: {{ dk.container_site_contents | json }}
    - makedirs: true
    - mode: "0644"
    - user: root
    - group: root
    - require:
      - file: thumbnail-server-config-project-dir-file-directory

# No secrets in the compose file: the service reads them from the env file (env_file:).
thumbnail-server-config-compose-file-managed:
  file.managed:
    - name: {{ dk.compose_file | json }}
    - contents: {{ dk.compose_contents | json }}
    - mode: "0644"
    - user: root
    - group: root
    - require:
      - file: thumbnail-server-config-project-dir-file-directory
{%-     if ts.jemalloc.enabled %}

# The host's jemalloc, preloaded into the container (read-only bind mount + LD_PRELOAD).
thumbnail-server-config-jemalloc-compose_enabled:
  jemalloc.compose_enabled:
    - name: {{ dk.override_file | json }}
    - services: {{ [dk.service] | json }}
    - malloc_conf: {{ ts.jemalloc.malloc_conf | json }}
    - require:
      - file: thumbnail-server-config-project-dir-file-directory
{%-     else %}

thumbnail-server-config-jemalloc-compose_disabled:
  jemalloc.compose_disabled:
    - name: {{ dk.override_file | json }}
{%-     endif %}
{%-   endif %}
{%- endif %}
