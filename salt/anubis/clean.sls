{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as anubis with context %}
{%- from "nginx/map.jinja" import mapdata as nginx with context %}
{%- set site_files, dropin_dirs = [], [] %}
{%- for inst in anubis.instances %}
{%-   do site_files.append(nginx.sites_dir ~ "/" ~ inst.nginx_site ~ ".conf") %}
{%-   if inst.dropin_file %}
{%-     do dropin_dirs.append(inst.dropin_file.rsplit("/", 1)[0]) %}
{%-   endif %}
{%- endfor %}
# Removes what the formula and upstream's package put on the host: the instances in
# pillar anubis:instances (stopped and disabled first), their nginx sites (nginx is
# reloaded after `nginx -t` if it runs; nginx itself stays, see nginx.clean), every
# file under config_dir, key_dir and the state directories (signing keys and bbolt
# stores included), and the package or unpacked tarball; then the mine entry
# opskit_targets is published again without the instances (common.mine). Stop
# instances that are no longer in pillar yourself (systemctl disable --now anubis@NAME).
include:
  - common.mine
{%- if anubis.runtime == "docker" %}

# Runtime docker: the instances' containers go with the compose project.
anubis-clean-compose-anubis-compose_absent:
  anubis.compose_absent:
    - name: {{ anubis.docker.project_dir | json }}
    - compose_argv: {{ anubis.docker.compose_argv | json }}
    - compose_file: {{ anubis.docker.compose_file | json }}
    - require_in:
      - file: anubis-clean-files-file-absent
{%- endif %}
{%- for inst in anubis.instances if anubis.runtime == "systemd" %}

{{ ("anubis-clean-service-" ~ inst.name ~ "-service-dead") | json }}:
  service.dead:
    - name: {{ inst.unit | json }}
    - enable: false
    - require_in:
      - file: anubis-clean-files-file-absent
{%- endfor %}
{%- if anubis.instances %}

anubis-clean-sites-file-absent:
  file.absent:
    - names: {{ site_files | json }}

# No shell: the module runs `nginx -t -q` as an argv list, then reloads the service.
anubis-clean-nginx-reload-anubis-nginx_reloaded:
  anubis.nginx_reloaded:
    - name: {{ nginx.service | json }}
    - binary: {{ nginx.binary | json }}
    - onchanges:
      - file: anubis-clean-sites-file-absent
{%- endif %}

anubis-clean-files-file-absent:
  file.absent:
    - names: {{ ([anubis.config_dir, anubis.key_dir, anubis.registry_file, anubis.state_dir,
                  "/var/lib/private/anubis", "/var/cache/private/anubis", "/var/cache/anubis",
                  anubis.cache_dir, anubis.install_dir, "/etc/systemd/system/anubis@.service"]
                 + dropin_dirs
                 + ([anubis.docker.project_dir] if anubis.runtime == "docker" else [])) | json }}

anubis-clean-package-pkg-removed:
  pkg.removed:
    - name: anubis
    - require:
      - file: anubis-clean-files-file-absent

anubis-clean-systemd-reload-module-run:
  module.run:
    - service.systemctl_reload: []
    - onchanges:
      - file: anubis-clean-files-file-absent
