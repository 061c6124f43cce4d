{%- from "nginx/map.jinja" import mapdata as nginx with context %}

nginx-config-test-script-file-managed:
  file.managed:
    - name: {{ nginx.test_script | json }}
    - source: salt://nginx/files/opskit-nginx-test.sh.jinja
    - template: jinja
    - mode: "0755"
    - user: root
    - group: root
    - context:
        conf_file: {{ nginx.conf_file | json }}
        sites_dir: {{ nginx.sites_dir | json }}
        binary: {{ nginx.binary | json }}

nginx-config-sites-dir-file-directory:
  file.directory:
    - name: {{ nginx.sites_dir | json }}
    - mode: "0755"
    - user: root
    - group: root

# A changed nginx.conf is tested (nginx -t -c <candidate>) before it replaces the
# live one; if the test fails the live file stays and nginx is not reloaded.
nginx-config-file-managed:
  file.managed:
    - name: {{ nginx.conf_file | json }}
    - source: salt://nginx/files/nginx.conf.jinja
    - template: jinja
    - mode: "0644"
    - user: root
    - group: root
    # run without a shell (split into words): the schema allows no space or quote in it
    - check_cmd: {{ (nginx.test_script ~ " main") | json }}
    - context:
        user: {{ nginx.user | json }}
        worker_processes: {{ nginx.worker_processes | json }}
        worker_connections: {{ nginx.worker_connections | json }}
        server_tokens: {{ nginx.server_tokens | json }}
        include_sites_enabled: {{ nginx.include_sites_enabled | json }}
        sites_dir: {{ nginx.sites_dir | json }}
    - require:
      - pkg: nginx-package-install-pkg-installed
      - file: nginx-config-test-script-file-managed
      - file: nginx-config-sites-dir-file-directory
