{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as ts with context %}
{#- systemd mode: the service's packages (those of the release and what PDF and video
    thumbnails run) and user, and the release directory (checked against its pinned
    sha256 before it is unpacked). docker mode installs nothing here: the image is the
    release, and the Docker engine is the site's. #}
{%- if ts.configured and ts.mode == "systemd" %}
{%-   set sd = ts.systemd %}

thumbnail-server-package-pkgs-pkg-installed:
  pkg.installed:
    - pkgs: {{ sd.packages | json }}
{%-   if sd.manage_user %}

thumbnail-server-package-group-group-present:
  group.present:
    - name: {{ sd.group | json }}
    - system: true

thumbnail-server-package-user-user-present:
  user.present:
    - name: {{ sd.user | json }}
    - gid: {{ sd.group | json }}
    - system: true
    - home: /nonexistent
    - createhome: false
    - shell: /usr/sbin/nologin
    - require:
      - group: thumbnail-server-package-group-group-present
{%-   endif %}

# Unpacked once per version (a second apply downloads nothing); a checksum mismatch
# fails here and the running release stays.
thumbnail-server-package-release-archive-extracted:
  archive.extracted:
    - name: {{ sd.release_dir | json }}
    - source: {{ sd.release.source | json }}
    - source_hash: {{ sd.release.source_hash | json }}
    - enforce_toplevel: false
    - if_missing: {{ sd.release_dir | json }}

# The unit runs <install_dir>/current/<workdir>: switching versions is one symlink.
thumbnail-server-package-current-file-symlink:
  file.symlink:
    - name: {{ sd.current | json }}
    - target: {{ sd.release_dir | json }}
    - force: true
    - require:
      - archive: thumbnail-server-package-release-archive-extracted
{%- endif %}
