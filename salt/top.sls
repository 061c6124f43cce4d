# Example top file: the CMDB decides what each host becomes. Every host gets `common`;
# each formula is applied to the hosts whose CMDB record lists the matching role in
# pillar `roles`. opskit's lab uses this file as is.
base:
  '*':
    - common
