# A small real service for the tuning formula's jemalloc states
# (tests/integration/test_tuning_lab.py): a Python process that keeps allocating and
# freeing memory. Not in any host's CMDB record.
lab-malloc-probe-script-file-managed:
  file.managed:
    - name: /usr/local/lib/opskit-lab/malloc_probe.py
    - makedirs: true
    - mode: "0644"
    - contents: |
        """opskit lab: allocate and free memory forever (a jemalloc.enabled target)."""
        import time

        while True:
            chunks = [bytearray(size) for size in range(1024, 256 * 1024, 4096)]
            del chunks
            time.sleep(2)

lab-malloc-probe-unit-file-managed:
  file.managed:
    - name: /etc/systemd/system/opskit-lab-malloc-probe.service
    - mode: "0644"
    - contents: |
        [Unit]
        Description=opskit lab: allocates memory (target of the tuning formula's jemalloc states)

        [Service]
        ExecStart=/usr/bin/python3 /usr/local/lib/opskit-lab/malloc_probe.py
        DynamicUser=yes

        [Install]
        WantedBy=multi-user.target

lab-malloc-probe-service-running:
  service.running:
    - name: opskit-lab-malloc-probe.service
    - enable: true
    - watch:
      - file: lab-malloc-probe-script-file-managed
      - file: lab-malloc-probe-unit-file-managed
