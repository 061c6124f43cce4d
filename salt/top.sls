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
{%- set extra_sls = salt["pillar.get"]("extra_sls", []) %}
{%- if extra_sls %}
  '{{ grains["id"] }}':
{%- for sls in extra_sls %}
    - {{ sls }}
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
