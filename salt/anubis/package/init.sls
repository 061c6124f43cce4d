{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as anubis with context %}
{%- set release = anubis.release %}
{#- runtime docker: nothing to install here; compose pulls the image on first start
    (docker and its compose plugin are the host's, see docs/anubis.md). #}
{%- if anubis.instances and anubis.runtime == "systemd" %}
{%-   if release.method == "deb" %}

# The release asset is downloaded and checked against the pinned sha256 (or the
# mirror's checksum file) before apt sees it; a mismatch fails here.
anubis-package-download-file-managed:
  file.managed:
    - name: {{ (anubis.cache_dir ~ "/" ~ release.asset) | json }}
    - source: {{ release.url | json }}
    - source_hash: {{ release.source_hash | json }}
    - makedirs: true
    - mode: "0644"
    - user: root
    - group: root

# Upstream's package: /usr/bin/anubis and /usr/lib/systemd/system/anubis@.service.
anubis-package-install-pkg-installed:
  pkg.installed:
    - sources:
      - anubis: {{ (anubis.cache_dir ~ "/" ~ release.asset) | json }}
    - require:
      - file: anubis-package-download-file-managed
{%-   else %}

anubis-package-install-archive-extracted:
  archive.extracted:
    - name: {{ anubis.install_dir | json }}
    - source: {{ release.url | json }}
    - source_hash: {{ release.source_hash | json }}
    - if_missing: {{ (anubis.install_dir ~ "/" ~ release.top_dir ~ "/bin/anubis") | json }}
    - enforce_toplevel: true
    - user: root
    - group: root

# Upstream's template unit from the tarball, linked into systemd's search path (as
# `systemctl link` does); each instance's drop-in points ExecStart at this release's
# binary (upstream's unit names /usr/bin/anubis).
anubis-package-unit-file-symlink:
  file.symlink:
    - name: /etc/systemd/system/anubis@.service
    - target: {{ (anubis.install_dir ~ "/" ~ release.top_dir ~ "/run/anubis@.service") | json }}
    - require:
      - archive: anubis-package-install-archive-extracted
{%-   endif %}
{%- endif %}
