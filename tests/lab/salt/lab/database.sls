{#- Lab scaffolding for db-01: a real redis-server (plain and TLS with client
    certificates) and a real PostgreSQL 15 (sslmode=require, password plus client
    certificate), for the exporters formula to scrape. Not part of opskit.

    A small lab CA, the servers' certificates and the exporters' client certificate are
    made on the minion, once, under /etc/opskit-lab-pki. Passwords come from the host's
    pillar `lab` (the sample CMDB record), with lab-only defaults. -#}
{%- set lab = salt["pillar.get"]("lab", {}) %}
{%- set pki = "/etc/opskit-lab-pki" %}
{%- set redis_password = lab.get("redis_password", "lab-redis-password") %}
{%- set pg_password = lab.get("postgres_password", "lab-postgres-password") %}
{%- set pg_major = lab.get("postgres_major", 15) %}
{%- set pg_conf = "/etc/postgresql/" ~ pg_major ~ "/main" %}
{#- Files are built here and reach the SLS as data (| json), like every formula's. #}
{%- set redis_conf = [
      "# opskit lab: plain port 6379 and TLS port 6380 (client certificates required).",
      "bind * -::*",
      "protected-mode no",
      "requirepass \"" ~ redis_password ~ "\"",
      "tls-port 6380",
      "tls-cert-file " ~ pki ~ "/redis.crt",
      "tls-key-file " ~ pki ~ "/redis.key",
      "tls-ca-cert-file " ~ pki ~ "/ca.crt",
      "tls-auth-clients yes",
      ""] | join("\n") %}
{%- set pg_ssl_conf = [
      "# opskit lab: TLS with the lab CA; clients must present a certificate.",
      "listen_addresses = '*'",
      "ssl = on",
      "ssl_cert_file = '" ~ pki ~ "/postgres.crt'",
      "ssl_key_file = '" ~ pki ~ "/postgres.key'",
      "ssl_ca_file = '" ~ pki ~ "/ca.crt'",
      ""] | join("\n") %}
{%- set pg_role_sql = [
      "CREATE ROLE exporter LOGIN PASSWORD '" ~ pg_password | replace("'", "''") ~ "';",
      "GRANT pg_monitor TO exporter;",
      ""] | join("\n") %}

lab-database-packages-installed:
  pkg.installed:
    - pkgs:
      - redis-server
      - postgresql
      - openssl

lab-database-pki-generated:
  cmd.script:
    - source: salt://lab/files/make-pki.sh
    - args: {{ (pki | quote ~ " " ~ grains["id"] | quote) | json }}
    - creates: {{ (pki ~ "/.complete") | json }}
    - require:
      - pkg: lab-database-packages-installed

lab-database-redis-config-managed:
  file.managed:
    - name: /etc/redis/opskit-lab.conf
    - user: redis
    - group: redis
    - mode: "0640"
    - contents: {{ redis_conf | json }}
    - require:
      - cmd: lab-database-pki-generated

lab-database-redis-include-present:
  file.append:
    - name: /etc/redis/redis.conf
    - text: include /etc/redis/opskit-lab.conf
    - require:
      - file: lab-database-redis-config-managed

lab-database-redis-service-running:
  service.running:
    - name: redis-server
    - enable: true
    - watch:
      - file: lab-database-redis-config-managed
      - file: lab-database-redis-include-present
    # The exporters formula scrapes these servers: they come first in a highstate.
    - require_in:
      - sls: exporters.install

lab-database-postgres-ssl-managed:
  file.managed:
    - name: {{ (pg_conf ~ "/conf.d/opskit-lab.conf") | json }}
    - user: postgres
    - group: postgres
    - mode: "0644"
    - makedirs: true
    - contents: {{ pg_ssl_conf | json }}
    - require:
      - cmd: lab-database-pki-generated

lab-database-postgres-hba-managed:
  file.managed:
    - name: {{ (pg_conf ~ "/pg_hba.conf") | json }}
    - user: postgres
    - group: postgres
    - mode: "0640"
    - contents: |
        # opskit lab: local admin by peer; the exporter only over TLS, with its password
        # and a client certificate whose CN is its user name.
        local   all       postgres                 peer
        local   all       all                      peer
        hostssl postgres  exporter  0.0.0.0/0      scram-sha-256 clientcert=verify-full
        hostssl postgres  exporter  ::/0           scram-sha-256 clientcert=verify-full
    - require:
      - pkg: lab-database-packages-installed

lab-database-postgres-service-running:
  service.running:
    - name: {{ ("postgresql@" ~ pg_major ~ "-main") | json }}
    - enable: true
    - watch:
      - file: lab-database-postgres-ssl-managed
      - file: lab-database-postgres-hba-managed

lab-database-postgres-exporter-role-present:
  cmd.run:
    - name: psql -v ON_ERROR_STOP=1 -q
    - runas: postgres
    - stdin: {{ pg_role_sql | json }}
    - unless: psql -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'exporter'" | grep -q 1
    - require:
      - service: lab-database-postgres-service-running
    - require_in:
      - sls: exporters.install
