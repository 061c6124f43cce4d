{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as monitoring with context %}
{%- set prom = monitoring.prometheus %}
{%- set targets = salt["monitoring.targets_settings"](monitoring) %}
{%- set secret_files = salt["monitoring.secret_files"](monitoring) %}
# Pillar values reach the YAML files only through monitoring.render (the shared YAML
# renderer of _utils/opskit_formats.py). Every file is checked before it replaces the live one (promtool check rules / check
# config, amtool check-config): a file that fails stays as it was, the state fails
# with the checker's message, and nothing is reloaded.
include:
  - {{ (tplroot ~ ".package") | json }}

monitoring-config-directories-file-directory:
  file.directory:
    - names:
      - {{ prom.rules_dir | json }}
      - {{ monitoring.targets.dir | json }}
      - {{ monitoring.scrape.secrets_dir | json }}
    - user: root
    - group: {{ monitoring.group | json }}
    - mode: "0750"
    - require:
      - pkg: monitoring-package-install-pkg-installed
{%- for secret in secret_files %}

{{ ("monitoring-config-secret-" ~ secret.id ~ "-file-managed") | json }}:
  file.managed:
    - name: {{ secret.path | json }}
    # Read from pillar on this host: the secret is not a state argument, and
    # show_changes keeps it out of the state's return.
    - contents_pillar: {{ secret.pillar | json }}
    - user: root
    - group: {{ monitoring.group | json }}
    - mode: "0640"
    - show_changes: false
    - require:
      - file: monitoring-config-directories-file-directory
{%- endfor %}

monitoring-config-rules-opskit-file-managed:
{%- if prom.opskit_rules %}
  file.managed:
    - name: {{ (prom.rules_dir ~ "/opskit.yml") | json }}
    - source: {{ ("salt://" ~ tplroot ~ "/files/opskit.rules.yml") | json }}
    - user: root
    - group: {{ monitoring.group | json }}
    - mode: "0640"
    - check_cmd: /usr/bin/promtool check rules
    - tmp_ext: .yml
    - require:
      - file: monitoring-config-directories-file-directory
{%- else %}
  file.absent:
    - name: {{ (prom.rules_dir ~ "/opskit.yml") | json }}
{%- endif %}

monitoring-config-rules-site-file-managed:
{%- if prom.rule_groups %}
  file.managed:
    - name: {{ (prom.rules_dir ~ "/site.yml") | json }}
    - contents: {{ salt["monitoring.render"]("site_rules", monitoring) | json }}
    - user: root
    - group: {{ monitoring.group | json }}
    - mode: "0640"
    - check_cmd: /usr/bin/promtool check rules
    - tmp_ext: .yml
    - require:
      - file: monitoring-config-directories-file-directory
{%- else %}
  file.absent:
    - name: {{ (prom.rules_dir ~ "/site.yml") | json }}
{%- endif %}

# What monitoring.refresh_targets reads when the reactor runs it (no secrets).
monitoring-config-targets-settings-file-serialize:
  file.serialize:
    - name: /etc/prometheus/opskit-targets.json
    - dataset: {{ targets | json }}
    - serializer: json
    - user: root
    - group: root
    - mode: "0644"
    - require:
      - file: monitoring-config-directories-file-directory

monitoring-config-targets-monitoring-targets_written:
  monitoring.targets_written:
    - name: {{ monitoring.targets.dir | json }}
    - settings: {{ targets | json }}
    - require:
      - file: monitoring-config-targets-settings-file-serialize

monitoring-config-prometheus-file-managed:
  file.managed:
    - name: {{ prom.config_file | json }}
    - contents: {{ salt["monitoring.render"]("prometheus", monitoring) | json }}
    - user: root
    - group: {{ monitoring.group | json }}
    - mode: "0640"
    - check_cmd: /usr/bin/promtool check config
    - tmp_ext: .yml
    - require:
      - file: monitoring-config-rules-opskit-file-managed
      - file: monitoring-config-rules-site-file-managed
      - monitoring: monitoring-config-targets-monitoring-targets_written
{%- for secret in secret_files %}
      - file: {{ ("monitoring-config-secret-" ~ secret.id ~ "-file-managed") | json }}
{%- endfor %}

# Webhook URLs can carry tokens: the file is not world-readable and its diff is not shown.
monitoring-config-alertmanager-file-managed:
  file.managed:
    - name: {{ monitoring.alertmanager.config_file | json }}
    - contents: {{ salt["monitoring.render"]("alertmanager", monitoring) | json }}
    - user: root
    - group: {{ monitoring.group | json }}
    - mode: "0640"
    - show_changes: false
    - check_cmd: /usr/bin/amtool check-config
    - tmp_ext: .yml
    - require:
      - pkg: monitoring-package-install-pkg-installed
