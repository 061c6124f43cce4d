# Lab scaffolding for the Anubis-protected web host (web-01.lab); not part of opskit.
#  - a self-signed TLS certificate at the paths the host's CMDB record gives the
#    anubis formula (a real host gets its certificate from its CA);
#  - opskit-lab-echo on 127.0.0.1:8080, the "application" behind the Anubis sites:
#    it answers with the headers and body size it received, so tests can see what
#    reached the application.
# `order: 1` runs these before the formulas: nginx -t needs the certificate to exist.
{%- set host = grains["id"] %}
{%- set ip = (grains.get("ipv4") or []) | reject("equalto", "127.0.0.1") | first %}
{%- set tls_dir = "/etc/opskit-lab/tls" %}

lab-anubis-openssl-pkg-installed:
  pkg.installed:
    - name: openssl
    - order: 1

lab-anubis-tls-dir-file-directory:
  file.directory:
    - name: {{ tls_dir | json }}
    - mode: "0700"
    - makedirs: true
    - order: 1

lab-anubis-tls-cert-cmd-run:
  cmd.run:
    # The minion id is data: each word is shell-quoted, the whole command is a string.
{%- set key = tls_dir ~ "/" ~ host ~ ".key" %}
{%- set cert = tls_dir ~ "/" ~ host ~ ".pem" %}
    - name: {{ ("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 -subj "
                ~ ("/CN=" ~ host) | quote
                ~ " -addext " ~ ("subjectAltName=DNS:" ~ host ~ ",IP:" ~ ip) | quote
                ~ " -keyout " ~ key | quote ~ " -out " ~ cert | quote) | json }}
    - creates: {{ cert | json }}
    - order: 1
    - require:
      - pkg: lab-anubis-openssl-pkg-installed
      - file: lab-anubis-tls-dir-file-directory

lab-anubis-echo-file-managed:
  file.managed:
    - name: /usr/local/bin/opskit-lab-echo
    - source: salt://lab/files/opskit-lab-echo.py
    - mode: "0755"

lab-anubis-echo-unit-file-managed:
  file.managed:
    - name: /etc/systemd/system/opskit-lab-echo.service
    - contents: |
        [Unit]
        Description=opskit lab echo application (scaffolding behind the Anubis sites)
        [Service]
        ExecStart=/usr/bin/python3 /usr/local/bin/opskit-lab-echo
        DynamicUser=yes
        Restart=always
        [Install]
        WantedBy=multi-user.target

lab-anubis-echo-service-running:
  service.running:
    - name: opskit-lab-echo
    - enable: true
    - watch:
      - file: lab-anubis-echo-file-managed
      - file: lab-anubis-echo-unit-file-managed
