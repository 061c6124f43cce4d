{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as ts with context %}
{%- if ts.configured %}
include:
  - {{ tplroot }}.package

thumbnail-server-config-dir-file-directory:
  file.directory:
    - name: {{ ts.config_dir }}
    - mode: "0700"
    - user: root
    - group: root
    - makedirs: true

# The service's environment, secrets included: mode 0600, root. The secrets come from
# pillar thumbnail_server:secrets on the minion; they are not in these states.
thumbnail-server-config-env-thumbnail_server-env_file:
  thumbnail_server.env_file:
    - name: {{ ts.env_file }}
    - settings: {{ ts | json }}
    - require:
      - file: thumbnail-server-config-dir-file-directory
{%-   if ts.mode == "systemd" %}
{%-     set sd = ts.systemd %}

thumbnail-server-config-dirs-file-directory:
  file.directory:
    - names:
      - {{ sd.log_dir }}
      - {{ sd.thumbnail_root }}
    - mode: "0750"
    - user: {{ sd.user }}
    - group: {{ sd.group }}
    - makedirs: true
{%-     if sd.manage_user %}
    - require:
      - user: thumbnail-server-package-user-user-present
{%-     endif %}

# No secrets in the unit: systemd reads them from the env file (as root) when it starts
# the service.
thumbnail-server-config-unit-file-managed:
  file.managed:
    - name: /etc/systemd/system/{{ sd.unit }}
    - source: salt://{{ tplroot }}/files/thumbnail-server.service.jinja
    - template: jinja
    - mode: "0644"
    - user: root
    - group: root
    - context:
        sd: {{ sd | json }}
        env_file: {{ ts.env_file | json }}
        backend: {{ ts.backend | json }}

thumbnail-server-config-memory-guard-script-file-managed:
  file.managed:
    - name: /usr/local/lib/opskit/thumbnail-server-memory-guard
    - source: salt://{{ tplroot }}/files/memory-guard.py
    - makedirs: true
    - mode: "0755"
    - user: root
    - group: root

{%-     if sd.memory_guard.enabled %}

thumbnail-server-config-memory-guard-unit-file-managed:
  file.managed:
    - name: /etc/systemd/system/{{ sd.guard_unit }}
    - source: salt://{{ tplroot }}/files/memory-guard.service.jinja
    - template: jinja
    - mode: "0644"
    - user: root
    - group: root
    - context:
        unit: {{ sd.unit | json }}
        limit_mb: {{ ts.memory_limit }}
        interval: {{ sd.memory_guard.interval }}
        samples: {{ sd.memory_guard.samples }}
        # The exporters formula's default textfile_directory of node_exporter.
        textfile_dir: /var/lib/node_exporter/textfile_collector
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
    - name: {{ dk.project_dir }}
    - mode: "0755"
    - user: root
    - group: root
    - makedirs: true

# The site of the container's own nginx (IPv4 backend, the host site's timeouts),
# mounted read-only over the image's sites directory.
thumbnail-server-config-container-site-file-managed:
  file.managed:
    - name: {{ dk.container_site | json }}
    - source: {{ ("salt://" ~ tplroot ~ "/files/container-site.conf.jinja") | json }}
    - template: jinja
    - makedirs: true
    - mode: "0644"
    - user: root
    - group: root
    - context:
        container_port: {{ dk.container_port | json }}
        backend: {{ dk.container_backend | json }}
        proxy_connect_timeout: {{ ts.nginx.proxy_connect_timeout | json }}
        proxy_read_timeout: {{ ts.nginx.proxy_read_timeout | json }}
        proxy_send_timeout: {{ ts.nginx.proxy_send_timeout | json }}
    - require:
      - file: thumbnail-server-config-project-dir-file-directory

# No secrets in the compose file: the service reads them from the env file (env_file:).
thumbnail-server-config-compose-file-managed:
  file.managed:
    - name: {{ dk.compose_file }}
    - contents: {{ salt["thumbnail_server.render_compose"](ts) | json }}
    - mode: "0644"
    - user: root
    - group: root
    - require:
      - file: thumbnail-server-config-project-dir-file-directory
{%-     if ts.jemalloc.enabled %}

# The host's jemalloc, preloaded into the container (read-only bind mount + LD_PRELOAD).
thumbnail-server-config-jemalloc-compose_enabled:
  jemalloc.compose_enabled:
    - name: {{ dk.override_file }}
    - services: [{{ dk.service }}]
    - malloc_conf: {{ ts.jemalloc.malloc_conf | json }}
    - require:
      - file: thumbnail-server-config-project-dir-file-directory
{%-     else %}

thumbnail-server-config-jemalloc-compose_disabled:
  jemalloc.compose_disabled:
    - name: {{ dk.override_file }}
{%-     endif %}
{%-   endif %}
{%- endif %}
