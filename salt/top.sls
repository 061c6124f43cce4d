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
{#- extra_sls is rendered only as data and only when opskit_settings_top.py accepts it
    (SLS names); the `common` formula, which every host gets, refuses an invalid one
    with a message naming the key (a top file that fails to render shows the user
    nothing useful). The target is this host's own pillar (the top file is rendered for
    each minion with its pillar), never its minion id. #}
{%- set extra_sls = salt["pillar.get"]("extra_sls", []) %}
{%- if extra_sls and not salt["opskit.check"]("top", {"extra_sls": extra_sls}) %}
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
