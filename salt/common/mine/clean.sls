# Removes this host's scrape targets from the Salt mine (monitoring hosts drop them
# from their target files at their next run, or at once through the reactor).

common-mine-clean-targets-opskit-targets_absent:
  opskit.targets_absent:
    - name: opskit_targets
