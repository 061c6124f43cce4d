{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as ts with context %}
{%- if ts.configured %}
include:
  - {{ tplroot }}.config
{%-   if ts.mode == "systemd" %}
{%-     set sd = ts.systemd %}
{#-     jemalloc before the first start, so a new host starts the service once, with it. #}
{%-     if not ts.jemalloc.enabled %}

thumbnail-server-service-jemalloc:
  jemalloc.disabled:
    - name: {{ sd.unit }}
    - require:
      - module: thumbnail-server-config-systemd-reload-module-run
{%-     else %}

# Owned here (not by the tuning formula, which refuses to list this unit too): the
# drop-in 50-opskit-jemalloc.conf. A changed MALLOC_CONF restarts the running service
# and is verified in /proc/<MainPID>/maps.
thumbnail-server-service-jemalloc:
  jemalloc.enabled:
    - name: {{ sd.unit }}
    - malloc_conf: {{ ts.jemalloc.malloc_conf | json }}
    - require:
      - module: thumbnail-server-config-systemd-reload-module-run
{%-     endif %}

# Restarted when the release, the unit or the environment changes.
thumbnail-server-service-running-service-running:
  service.running:
    - name: {{ sd.unit }}
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
    - name: {{ sd.guard_unit }}
    - enable: true
    - require:
      - service: thumbnail-server-service-running-service-running
    - watch:
      - file: thumbnail-server-config-memory-guard-script-file-managed
      - file: thumbnail-server-config-memory-guard-unit-file-managed
{%-     else %}

thumbnail-server-service-memory-guard-service-dead:
  service.dead:
    - name: {{ sd.guard_unit }}
    - enable: false

thumbnail-server-service-memory-guard-unit-file-absent:
  file.absent:
    - name: /etc/systemd/system/{{ sd.guard_unit }}
    - require:
      - service: thumbnail-server-service-memory-guard-service-dead

thumbnail-server-service-memory-guard-reload-module-run:
  module.run:
    - service.systemctl_reload: []
    - onchanges:
      - file: thumbnail-server-service-memory-guard-unit-file-absent
{%-     endif %}

# Bounded wait for /ping -> pong; also checks jemalloc in the main process.
thumbnail-server-service-health-thumbnail_server-healthy:
  thumbnail_server.healthy:
    - name: {{ sd.unit }}
    - url: {{ ts.health.url }}
    - timeout: {{ ts.health.timeout }}
    - jemalloc: {{ ts.jemalloc.enabled | json }}
    - require:
      - service: thumbnail-server-service-running-service-running
{%-   else %}
{%-     set dk = ts.docker %}
{%-     set jemalloc_state = {"jemalloc": "thumbnail-server-config-jemalloc-compose_enabled"
          if ts.jemalloc.enabled else "thumbnail-server-config-jemalloc-compose_disabled"} %}
{%-     if dk.manage_up %}

# Recreates the container when the compose file, the env file, the jemalloc override or
# the container's nginx site changed (that nginx reads its site only when it starts).
thumbnail-server-service-compose-up-cmd-run:
  cmd.run:
    - name: {{ dk.recreate }}
    - cwd: {{ dk.project_dir }}
    - onchanges:
      - file: thumbnail-server-config-compose-file-managed
      - file: thumbnail-server-config-container-site-file-managed
      - thumbnail_server: thumbnail-server-config-env-thumbnail_server-env_file
      - {{ jemalloc_state | json }}

# Starts it when it is not running (and nothing changed).
thumbnail-server-service-compose-start-cmd-run:
  cmd.run:
    - name: {{ dk.up }}
    - cwd: {{ dk.project_dir }}
    - unless: test -n "$({{ dk.running_check }})"
    - require:
      - cmd: thumbnail-server-service-compose-up-cmd-run
{%-     endif %}

thumbnail-server-service-health-thumbnail_server-healthy:
  thumbnail_server.healthy:
    - name: {{ dk.container_name }}
    - url: {{ ts.health.url }}
    - timeout: {{ ts.health.timeout }}
    - systemd: false
    - require:
      - file: thumbnail-server-config-compose-file-managed
      - thumbnail_server: thumbnail-server-config-env-thumbnail_server-env_file
      - {{ jemalloc_state | json }}
{%-     if dk.manage_up %}
      - cmd: thumbnail-server-service-compose-start-cmd-run
{%-     endif %}
{%-   endif %}
{%- endif %}
