{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as ts with context %}
{%- if ts.configured %}
include:
  - {{ (tplroot ~ ".config") | json }}
{%-   if ts.mode == "systemd" %}
{%-     set sd = ts.systemd %}
{#-     jemalloc before the first start, so a new host starts the service once, with it. #}
{%-     if not ts.jemalloc.enabled %}

thumbnail-server-service-jemalloc:
  jemalloc.disabled:
    - name: {{ sd.unit | json }}
    - require:
      - module: thumbnail-server-config-systemd-reload-module-run
{%-     else %}

# Owned here (not by the tuning formula, which refuses to list this unit too): the
# drop-in 50-opskit-jemalloc.conf. A changed MALLOC_CONF restarts the running service
# and is verified in /proc/<MainPID>/maps.
thumbnail-server-service-jemalloc:
  jemalloc.enabled:
    - name: {{ sd.unit | json }}
    - malloc_conf: {{ ts.jemalloc.malloc_conf | json }}
    - require:
      - module: thumbnail-server-config-systemd-reload-module-run
{%-     endif %}

# Restarted when the release, the unit or the environment changes.
thumbnail-server-service-running-service-running:
  service.running:
    - name: {{ sd.unit | json }}
    - enable: true
    - require:
      - jemalloc: thumbnail-server-service-jemalloc
      - pkg: thumbnail-server-package-pkgs-pkg-installed
      - file: thumbnail-server-config-dirs-file-directory
    - watch:
      - file: thumbnail-server-package-current-file-symlink
      - file: thumbnail-server-config-unit-file-managed
      - thumbnail_server: thumbnail-server-config-env-thumbnail_server-env_file
{%-     if sd.memory_guard.enabled %}

thumbnail-server-service-memory-guard-service-running:
  service.running:
    - name: {{ sd.guard_unit | json }}
    - enable: true
    - require:
      - service: thumbnail-server-service-running-service-running
    - watch:
      - file: thumbnail-server-config-memory-guard-script-file-managed
      - file: thumbnail-server-config-memory-guard-unit-file-managed
{%-     else %}

thumbnail-server-service-memory-guard-service-dead:
  service.dead:
    - name: {{ sd.guard_unit | json }}
    - enable: false

thumbnail-server-service-memory-guard-unit-file-absent:
  file.absent:
    - name: {{ ("/etc/systemd/system/" ~ sd.guard_unit) | json }}
    - require:
      - service: thumbnail-server-service-memory-guard-service-dead

thumbnail-server-service-memory-guard-reload-module-run:
  module.run:
    - service.systemctl_reload: []
    - onchanges:
      - file: thumbnail-server-service-memory-guard-unit-file-absent
{%-     endif %}

# Bounded wait for <site_root>ping -> pong; also checks jemalloc in the main process.
thumbnail-server-service-health-thumbnail_server-healthy:
  thumbnail_server.healthy:
    - name: {{ sd.unit | json }}
    - url: {{ ts.health.url | json }}
    - timeout: {{ ts.health.timeout | json }}
    - jemalloc: {{ ts.jemalloc.enabled | json }}
    - require:
      - service: thumbnail-server-service-running-service-running
{%-   else %}
{%-     set dk = ts.docker %}
{%-     set jemalloc_state = {"jemalloc": "thumbnail-server-config-jemalloc-compose_enabled"
          if ts.jemalloc.enabled else "thumbnail-server-config-jemalloc-compose_disabled"} %}
{%-     if dk.manage_up %}

# `up -d` when the container is not running; a change in one of the watched files
# recreates it (mod_watch: `up -d --force-recreate`). Commands are argv lists.
thumbnail-server-service-compose-running:
  thumbnail_server.compose_running:
    - name: {{ dk.project_dir | json }}
    - settings: {{ ts | json }}
    - watch:
      - file: thumbnail-server-config-compose-file-managed
      - file: thumbnail-server-config-container-site-file-managed
      - thumbnail_server: thumbnail-server-config-env-thumbnail_server-env_file
      - {{ jemalloc_state | json }}
{%-     endif %}

thumbnail-server-service-health-thumbnail_server-healthy:
  thumbnail_server.healthy:
    - name: {{ dk.container_name | json }}
    - url: {{ ts.health.url | json }}
    - timeout: {{ ts.health.timeout | json }}
    - jemalloc: {{ ts.jemalloc.enabled | json }}
    - systemd: false
    - require:
      - file: thumbnail-server-config-compose-file-managed
      - thumbnail_server: thumbnail-server-config-env-thumbnail_server-env_file
      - {{ jemalloc_state | json }}
{%-     if dk.manage_up %}
      - thumbnail_server: thumbnail-server-service-compose-running
{%-     endif %}
{%-   endif %}
{%- endif %}
