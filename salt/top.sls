# Example top file: the CMDB decides what each host becomes. Every host gets `common`;
# each formula goes to the hosts whose CMDB record lists the matching role in pillar
# `roles`; and a record can name further SLS for its host in pillar `extra_sls`
# (site-specific states kept outside these formulas). opskit's lab uses this file as is.
base:
  '*':
    - common
    # Which exporters (if any) is up to each host's pillar `exporters`: the CMDB decides.
    - exporters
  # Memory tuning (vm knobs, services under jemalloc) as the host's CMDB record says.
  'roles:database':
    - match: pillar
    - tuning
  'roles:thumbnail-server':
    - match: pillar
    - tuning
    # Seafile thumbnail server with nginx in front (runs it under jemalloc itself).
    - thumbnail-server
{#- extra_sls is rendered only as data and only when it is a list of at most 64 distinct
    SLS names (the rule opskit_settings_top.py states). The check is plain Jinja with
    Salt's regex_match filter, not opskit.check: Salt renders the top file BEFORE it
    syncs custom modules on a highstate (HighState.load_dynamic runs after top
    matching), so a fresh minion has no opskit module yet and a top file calling one
    fails to render, which Salt reports only as "No Top file ... matches found". The
    `common` formula, which every host gets, refuses an invalid extra_sls with a
    message naming the key. The target is this host's own pillar (the top file is
    rendered for each minion with its pillar), never its minion id. #}
{%- set extra_sls = salt["pillar.get"]("extra_sls", []) %}
{%- set sls_name = "[A-Za-z0-9_-]+(?:[.][A-Za-z0-9_-]+)*\\Z" %}
{%- set check = namespace(ok=extra_sls is sequence and extra_sls is not string
                          and extra_sls is not mapping and extra_sls | length <= 64) %}
{%- if check.ok %}
{%- for sls in extra_sls %}
{%- if sls is not string or sls | length > 255 or sls | regex_match(sls_name) is none
      or extra_sls[:loop.index0].count(sls) %}
{%- set check.ok = false %}
{%- endif %}
{%- endfor %}
{%- endif %}
{%- if extra_sls and check.ok %}
  'extra_sls:*':
    - match: pillar
{%- for sls in extra_sls %}
    - {{ sls | json }}
{%- endfor %}
{%- endif %}
  # Anubis-protected web front ends (nginx + anubis@<instance>).
  'roles:anubis':
    - match: pillar
    - anubis
  # Prometheus + Alertmanager scraping every target the fleet publishes to the mine.
  'roles:monitoring':
    - match: pillar
    - monitoring
