# Removes the sysctl.d files opskit owns. Live values stay until the next reboot, when
# the kernel's defaults (or other sysctl files) apply again.
{%- for knob in ("min_free_kbytes", "watermark_scale_factor", "vfs_cache_pressure") %}

{{ ("tuning-vm-clean-" ~ knob ~ "-file-absent") | json }}:
  file.absent:
    - name: {{ salt["vmtune.config_path"]("vm." ~ knob) | json }}
{%- endfor %}
