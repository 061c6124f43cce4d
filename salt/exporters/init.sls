# Prometheus exporters the host's pillar (CMDB) lists, as verified, hardened systemd
# services; their scrape targets reach the Salt mine through opskit.targets, which
# common.mine publishes after them.
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import merged with context %}
{%- from "common/macros.jinja" import deprecated_keys with context %}
include:
  - .install
  - common.mine
{{- deprecated_keys("exporters", merged) }}
