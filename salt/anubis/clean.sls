{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as anubis with context %}
{%- from "nginx/macros.jinja" import nginx_site_absent with context %}
# Removes the instances in pillar anubis:instances -- their nginx sites, units, files,
# signing keys and stores -- the mine entry and the package. nginx itself stays (other
# formulas may use it; nginx.clean removes it). Instances no longer in pillar are not
# known here: remove them before dropping them from pillar.
{%- if anubis.instances %}
include:
  - nginx
{%-   for inst in anubis.instances %}

{{ nginx_site_absent(inst.nginx_site) }}

anubis-clean-service-{{ inst.name }}-service-dead:
  service.dead:
    - name: {{ inst.unit }}
    - enable: false
    - require:
      - file: nginx-site-{{ inst.nginx_site }}-file-absent

anubis-clean-files-{{ inst.name }}-file-absent:
  file.absent:
    - names:
      - {{ inst.env_file }}
      - {{ inst.policy_file }}
      - {{ inst.key_file }}
      - {{ inst.dropin_file | replace("/opskit.conf", "") }}
      - /var/lib/private/anubis/{{ inst.name }}
      - {{ inst.state_dir }}
    - require:
      - service: anubis-clean-service-{{ inst.name }}-service-dead
{%-   endfor %}
{%- endif %}

anubis-clean-registry-file-absent:
  file.absent:
    - name: {{ anubis.registry_file }}

anubis-clean-mine-module-run:
  module.run:
    - mine.delete:
      - fun: {{ anubis.mine_name }}
    - onchanges:
      - file: anubis-clean-registry-file-absent

anubis-clean-package-pkg-removed:
  pkg.removed:
    - name: anubis

anubis-clean-tarball-file-absent:
  file.absent:
    - names:
      - {{ anubis.install_dir }}
      - /etc/systemd/system/anubis@.service
      - {{ anubis.cache_dir }}
