{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as tuning with context %}
{%- set vm = tuning.vm %}
{#- watermark_scale_factor goes first: the `auto` rule for min_free_kbytes reads it. #}
{%- for knob in ("watermark_scale_factor", "vfs_cache_pressure", "min_free_kbytes") %}
{%-   set conf = vm[knob] %}
{%-   if conf is not none %}
{%-     set args = conf if conf is mapping else {"value": conf} %}
{%-     set live = args.get("live", vm.live) %}
{%-     set check = args.copy() %}
{%-     do check.pop("live", none) %}
{#-     Refuse values this minion's memory cannot take, before any state is applied. #}
{%-     do salt["vmtune.resolve"]("vm." ~ knob, **check) %}

{{ ("tuning-vm-" ~ knob ~ "-vmtune-" ~ knob) | json }}:
  {{ ("vmtune." ~ knob) | json }}:
{%-     for key, value in check | dictsort %}
    - {{ key | json }}: {{ value | json }}
{%-     endfor %}
    - live: {{ live | json }}
{%-     if knob == "min_free_kbytes" and vm.watermark_scale_factor is not none %}
    - require:
      - vmtune: tuning-vm-watermark_scale_factor-vmtune-watermark_scale_factor
{%-     endif %}
{%-   endif %}
{%- endfor %}
