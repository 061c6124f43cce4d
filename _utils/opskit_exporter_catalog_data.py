"""The exporter catalog as data: one YAML document, read by
``_utils/opskit_exporter_catalog.py``.

Why YAML inside a ``.py`` file: Salt's ``saltutil.sync_*`` copies only ``.py`` files
from ``_utils/`` to minions, and a pip-installed opskit has no ``file_roots`` of its
own. Every exporter function on a minion needs the catalog, including
``exporter.targets``, a mine function that runs every ``mine_interval`` and must not
depend on a fileserver round trip. A YAML document string here reaches each minion
together with the code that interprets it, always in the same version, and stays plain
data (``yaml.safe_load``; the loader refuses unknown keys). A ``salt://`` copy would
add a fileserver dependency and version skew between facts and code, and there is
nothing a site should override in it: facts about upstream releases are not site
configuration. (What a site does override, the templates of units and configuration
files, is looked up through ``salt://`` with the TOFS pattern:
``_utils/opskit_exporter_templates.py``.)

Every fact carries a comment saying where it comes from (the upstream file, read at
the tag named), so that a reviewer can check it and a maintainer can update it.
"""

CATALOG_YAML = r"""
# Hardening every exporter's unit gets (systemd.exec(5)); an exporter's own `hardening`
# overrides single keys (null drops one).
hardening:
  NoNewPrivileges: "yes"
  ProtectSystem: strict
  ProtectHome: "yes"
  PrivateTmp: "yes"
  PrivateDevices: "yes"
  ProtectKernelTunables: "yes"
  ProtectKernelModules: "yes"
  ProtectKernelLogs: "yes"
  ProtectControlGroups: "yes"
  ProtectClock: "yes"
  ProtectHostname: "yes"
  RestrictNamespaces: "yes"
  RestrictRealtime: "yes"
  RestrictSUIDSGID: "yes"
  LockPersonality: "yes"
  MemoryDenyWriteExecute: "yes"
  RestrictAddressFamilies: AF_UNIX AF_INET AF_INET6
  CapabilityBoundingSet: ""
  SystemCallArchitectures: native
  SystemCallFilter: "@system-service"
  SystemCallErrorNumber: EPERM
  UMask: "0077"

# Machine names (uname -m, grains cpuarch) -> upstream's architecture names.
architectures:
  # promu (prometheus/promu cmd/crossbuild.go defaultPlatforms; cmd/tarball.go names
  # archives <name>-<version>.<os>-<arch>), read at HEAD 2026-08.
  promu: &promu
    x86_64: amd64
    amd64: amd64
    aarch64: arm64
    arm64: arm64
    armv7l: armv7
    armv6l: armv6
    armv5tel: armv5
    i386: "386"
    i686: "386"
    ppc64le: ppc64le
    ppc64: ppc64
    s390x: s390x
    riscv64: riscv64
  # redis_exporter (Makefile build-all-binaries, gox -arch lists, read at v1.88.0):
  # amd64, 386, arm, arm64, mips64(le), ppc64(le), s390x. The single 32-bit ARM build
  # "arm" states no GOARM level: only ARMv7 machines are mapped to it.
  redis: &redis
    x86_64: amd64
    amd64: amd64
    aarch64: arm64
    arm64: arm64
    armv7l: arm
    i386: "386"
    i686: "386"
    ppc64le: ppc64le
    ppc64: ppc64
    s390x: s390x
  # nginx-prometheus-exporter up to 0.8.0 (Makefile target `release`, read at v0.4.0
  # and v0.8.0): linux amd64 and 386, the latter named "i386".
  nginx_make: &nginx_make
    x86_64: amd64
    amd64: amd64
    i386: i386
    i686: i386
  # nginx-prometheus-exporter 0.9.0 .. 1.3.x (.goreleaser.yml builds.goarch, read at
  # v0.9.0, v0.11.0, v1.0.0 and v1.3.0): 386, amd64, arm (goarm 5, 6, 7), arm64,
  # ppc64le, mips64le, s390x; goreleaser's default archive name appends v<goarm>.
  nginx_goreleaser: &nginx_goreleaser
    x86_64: amd64
    amd64: amd64
    aarch64: arm64
    arm64: arm64
    armv7l: armv7
    armv6l: armv6
    armv5tel: armv5
    i386: "386"
    i686: "386"
    ppc64le: ppc64le
    s390x: s390x
  # nginx-prometheus-exporter from 1.4.0 (.goreleaser.yml at v1.4.0 and v1.5.3) adds
  # mips64, ppc64 and riscv64.
  nginx_goreleaser_1_4: &nginx_goreleaser_1_4
    <<: *nginx_goreleaser
    ppc64: ppc64
    riscv64: riscv64
  # dcgm-exporter (Makefile PLATFORMS and target package-build, read at 4.5.3-4.8.2):
  # linux/amd64 packaged as "x86-64", linux/arm64 as "sbsa".
  dcgm: &dcgm
    x86_64: x86-64
    amd64: x86-64
    aarch64: sbsa
    arm64: sbsa

exporters:
  node_exporter:
    description: Prometheus node_exporter (machine metrics)
    project: prometheus/node_exporter
    binary: node_exporter
    # node_exporter --help: --web.listen-address=:9100
    port: 9100
    flag_styles: [[0.0.0, kingpin]]
    listen_flag: --web.listen-address
    metric_prefix: node_
    up_metric: null
    releases:
      # promu: asset and top directory <name>-<version>.linux-<arch>; checksum file
      # sha256sums.txt (promu cmd/checksum.go checksumsFilename).
      - since: 0.0.0
        asset: node_exporter-{version}.linux-{arch}.tar.gz
        top_dir: "{stem}"
        checksums: sha256sums.txt
        arches: *promu
    # CHANGELOG: 1.0.0 added experimental TLS (--web.config); 1.5.0 renamed the flag
    # to --web.config.file.
    web_config: [[1.0.0, --web.config], [1.5.0, --web.config.file]]
    # Debian bookworm prometheus-node-exporter (dpkg-deb -c). Debian's
    # prometheus-*-exporter postinst scripts add the system user "prometheus", and
    # purging the package leaves it (Debian policy).
    package:
      name: prometheus-node-exporter
      binary: /usr/bin/prometheus-node-exporter
      unit: prometheus-node-exporter.service
      user: prometheus
    managed_flags: [web.listen-address, web.config, web.config.file, collector.textfile.directory]
    # Machine metrics: filesystems under /home stay visible (read-only); the
    # netclass/netdev collectors use netlink sockets.
    hardening:
      ProtectHome: read-only
      RestrictAddressFamilies: AF_UNIX AF_INET AF_INET6 AF_NETLINK

  redis_exporter:
    description: Prometheus redis_exporter (oliver006)
    project: oliver006/redis_exporter
    binary: redis_exporter
    # main.go: -web.listen-address default ":9121"
    port: 9121
    flag_styles: [[0.0.0, goflag]]
    listen_flag: --web.listen-address
    metric_prefix: redis_
    up_metric: redis_up
    releases:
      # package-github-binaries.sh tars .build/redis_exporter-${GITHUB_REF_NAME}.<os>-<arch>
      # (the tag, "v" included) and writes sha256sums.txt.
      - since: 0.0.0
        asset: redis_exporter-v{version}.linux-{arch}.tar.gz
        top_dir: "{stem}"
        checksums: sha256sums.txt
        arches: *redis
    # No exporter-toolkit web configuration: TLS comes from -tls-server-* flags and
    # basic auth from REDIS_EXPORTER_BASIC_AUTH_* variables.
    web_config: []
    package:
      name: prometheus-redis-exporter
      binary: /usr/bin/prometheus-redis-exporter
      unit: prometheus-redis-exporter.service
      user: prometheus
    managed_flags: [web.listen-address, redis.addr, redis.user, tls-ca-cert-file,
                    tls-client-cert-file, tls-client-key-file, tls-server-cert-file,
                    tls-server-key-file, tls-server-ca-cert-file, skip-tls-verification]
    secret_flags: [redis.password, redis.password-file, basic-auth-password,
                   basic-auth-hash-password]
    # opskit options -> the first release that understands what opskit writes for them
    # (main.go at the tag named: its flag.String/flag.Bool definitions). An older
    # release exits on the unknown flag ("flag provided but not defined") or, for
    # REDIS_USER, silently ignores it.
    requires:
      redis.user: [1.7.0, "-redis.user / REDIS_USER, main.go at v1.7.0"]
      redis.tls.ca: [1.8.0, "--tls-ca-cert-file, main.go at v1.8.0"]
      web.tls: [1.9.0, "--tls-server-cert-file and --tls-server-key-file, main.go at v1.9.0"]
      web.tls.client_ca: [1.33.0, "--tls-server-ca-cert-file, main.go at v1.33.0"]
      # REDIS_EXPORTER_BASIC_AUTH_USERNAME/_PASSWORD came in v1.67.0 (#967), the bcrypt
      # ..._HASH_PASSWORD in v1.80.2 (#1066); opskit only ever writes the hash.
      web.basic_auth_users: [1.80.2, "REDIS_EXPORTER_BASIC_AUTH_HASH_PASSWORD, main.go at v1.80.2"]

  postgres_exporter:
    description: Prometheus postgres_exporter (prometheus-community)
    project: prometheus-community/postgres_exporter
    binary: postgres_exporter
    # postgres_exporter --help: --web.listen-address=:9187
    port: 9187
    flag_styles: [[0.0.0, kingpin]]
    listen_flag: --web.listen-address
    metric_prefix: pg_
    up_metric: pg_up
    releases:
      # 0.9.0 is the first release under prometheus-community built with promu
      # (CHANGELOG 0.9.0 "Update build to use standard Prometheus promu/Dockerfile");
      # older releases used another naming scheme, which opskit does not download.
      - since: 0.9.0
        asset: postgres_exporter-{version}.linux-{arch}.tar.gz
        top_dir: "{stem}"
        checksums: sha256sums.txt
        arches: *promu
    # exporter-toolkit's --web.config.file, used since 0.10.0 ("Switch to go-kit log
    # and enable TLS/basic auth", first tagged v0.10.0).
    web_config: [[0.10.0, --web.config.file]]
    package:
      name: prometheus-postgres-exporter
      binary: /usr/bin/prometheus-postgres-exporter
      unit: prometheus-postgres-exporter.service
      user: prometheus
    managed_flags: [web.listen-address, web.config.file]

  nginx_exporter:
    description: NGINX Prometheus exporter (nginx/nginx-prometheus-exporter)
    # The repository moved from nginxinc/ to nginx/; GitHub redirects the old path.
    project: nginx/nginx-prometheus-exporter
    binary: nginx-prometheus-exporter
    # exporter.go: web.listen-address default ":9113"
    port: 9113
    # 0.x used Go's flag package, 1.0.0 moved to kingpin (#420); both accept
    # --flag=value, booleans differ (--flag=false / --no-flag).
    flag_styles: [[0.0.0, goflag], [1.0.0, kingpin]]
    listen_flag: --web.listen-address
    metric_prefix: nginx_
    up_metric: nginx_up
    releases:
      # Makefile target `release` (v0.4.0 .. v0.8.0): nginx-prometheus-exporter-$(TAG)-
      # linux-<arch>.tar.gz holding the binary at the top ($(TAG) is the version without
      # "v"), and sha256sums.txt.
      - since: 0.4.0
        asset: nginx-prometheus-exporter-{version}-linux-{arch}.tar.gz
        top_dir: ""
        checksums: sha256sums.txt
        arches: *nginx_make
      # goreleaser from 0.9.0: <project>_<version>_<os>_<arch>.tar.gz, files at the top
      # (no wrap_in_directory); .goreleaser.yml names the checksum file sha256sums.txt
      # up to 0.11.0.
      - since: 0.9.0
        asset: nginx-prometheus-exporter_{version}_linux_{arch}.tar.gz
        top_dir: ""
        checksums: sha256sums.txt
        arches: *nginx_goreleaser
      # 1.0.0 dropped checksum.name_template: goreleaser's default
      # <project>_<version>_checksums.txt applies from then on.
      - since: 1.0.0
        asset: nginx-prometheus-exporter_{version}_linux_{arch}.tar.gz
        top_dir: ""
        checksums: nginx-prometheus-exporter_{version}_checksums.txt
        arches: *nginx_goreleaser
      - since: 1.4.0
        asset: nginx-prometheus-exporter_{version}_linux_{arch}.tar.gz
        top_dir: ""
        checksums: nginx-prometheus-exporter_{version}_checksums.txt
        arches: *nginx_goreleaser_1_4
    # exporter-toolkit web configuration since 1.0.0 (#461, first tagged v1.0.0).
    web_config: [[1.0.0, --web.config.file]]
    package:
      name: prometheus-nginx-exporter
      binary: /usr/bin/prometheus-nginx-exporter
      unit: prometheus-nginx-exporter.service
      user: prometheus
    managed_flags: [web.listen-address, web.config.file, nginx.scrape-uri]
    requires:
      # unix:<socket>:<request path> scrape URIs: exporter.go parseUnixSocketAddress,
      # first in v0.5.0 (still there at v1.5.3).
      nginx.scrape_uri.unix: [0.5.0, "unix: scrape URIs, exporter.go at v0.5.0"]

  dcgm_exporter:
    description: NVIDIA DCGM exporter (GPU metrics)
    project: NVIDIA/dcgm-exporter
    binary: dcgm-exporter
    # pkg/cmd/app.go: --address default ":9400"
    port: 9400
    # urfave/cli: --flag / --flag=false
    flag_styles: [[0.0.0, urfave]]
    listen_flag: --address
    metric_prefix: DCGM_
    up_metric: null
    # Release tags pair the DCGM version the exporter was built against with its own,
    # <DCGM>-<exporter> (RELEASE.md "Versioning"; the Makefile builds with
    # -X main.BuildVersion=${DCGM_VERSION}-${VERSION}).
    version_kind: dcgm_pair
    tag: "{version}"
    releases:
      # Makefile target package-build (read at 4.5.3-4.8.2, present since 4.0.0-4.0.1):
      # `tar -czf dist/$DIST_NAME.tar.gz $(ls -A)` in a directory holding dcgm_exporter/,
      # DIST_NAME dcgm_exporter-linux-<x86-64|sbsa>-<exporter version>; inside:
      # usr/bin/dcgm-exporter, etc/dcgm-exporter/ (the collectors CSVs), LICENSE and
      # lib/systemd/system/nvidia-dcgm-exporter.service. NVIDIA publishes it outside
      # GitHub releases and writes no checksum file: a site mirror serves it (under
      # <base_url>/NVIDIA/dcgm-exporter/releases/download/<tag>/, or url_template) with
      # a sha256sums.txt, or the archive's sha256 is pinned.
      - since: 0.0.0
        asset: dcgm_exporter-linux-{arch}-{exporter_version}.tar.gz
        top_dir: dcgm_exporter
        binary_path: usr/bin/dcgm-exporter
        checksums: sha256sums.txt
        arches: *dcgm
        # Installed next to the binary: pkg/cmd/app.go's --collectors default is
        # /etc/dcgm-exporter/default-counters.csv, which an archive install lacks.
        files: [etc/dcgm-exporter/default-counters.csv]
    # NVIDIA publishes these archives outside GitHub releases: a mirror is required.
    default_base_url: null
    # --web-config-file since tag 3.3.3-3.3.0 ("TLS and Basic Auth support", #209).
    web_config: [[3.3.0, --web-config-file]]
    # Package per NVIDIA's CUDA repository; binary and unit per the Makefile (install
    # -> /usr/bin/dcgm-exporter) and packaging/config-files/systemd/.
    package:
      name: datacenter-gpu-manager-exporter
      binary: /usr/bin/dcgm-exporter
      unit: nvidia-dcgm-exporter.service
      user: null
    # DCGM needs root (NVIDIA's unit runs User=root; profiling metrics need
    # CAP_SYS_ADMIN, README's docker run --cap-add SYS_ADMIN).
    run_as_root: true
    managed_flags: [address, a, web-config-file, collectors, f, remote-hostengine-info, r]
    # /dev/nvidia*, CAP_SYS_ADMIN, and libdcgm loads code at run time.
    hardening:
      PrivateDevices: null
      MemoryDenyWriteExecute: null
      ProtectKernelModules: null
      CapabilityBoundingSet: CAP_SYS_ADMIN
      RestrictAddressFamilies: AF_UNIX AF_INET AF_INET6 AF_NETLINK AF_VSOCK

# postgres_exporter against PostgreSQL majors, from the README's "CI Tested PostgreSQL
# versions" line at each tag v0.9.0 .. v0.20.1 (prometheus-community/postgres_exporter):
#   9.4, 9.5 and 9.6 are listed up to v0.12.1 (6e2f8c33 "Update versions listed in the
#     README" dropped them, first in v0.13.0; .circleci/config.yml ran them up to v0.10.0);
#     0.11.1 is the release production runs with them (known good);
#   10 is listed up to v0.14.0 (gone in v0.15.0); 11 and 12 up to v0.18.1 (gone in v0.19.0);
#   13 from v0.9.0, 14 from v0.11.0, 15 from v0.12.0, 16 from v0.15.0, 17 from v0.17.0
#     (#1105), 18 from v0.19.0 (#1239).
# Outside the tested range opskit warns (an untested pair). It refuses known-bad pairs:
#   CHANGELOG 0.6.0: lib/pq 1.2.0 "drops support for ... PostgreSQL < 9.4";
#   PostgreSQL 17 moved the checkpoint columns from pg_stat_bgwriter to
#   pg_stat_checkpointer; postgres_exporter reads them there from 0.17.0 (#1072), which
#   holds for every major from 17 on.
postgres:
  oldest: "9.4"
  majors:
    "9.4": {tested: [0.9.0, 0.12.1], known_good: 0.11.1}
    "9.5": {tested: [0.9.0, 0.12.1], known_good: 0.11.1}
    "9.6": {tested: [0.9.0, 0.12.1], known_good: 0.11.1}
    "10": {tested: [0.9.0, 0.14.0]}
    "11": {tested: [0.9.0, 0.18.1]}
    "12": {tested: [0.9.0, 0.18.1]}
    "13": {tested: [0.9.0, null]}
    "14": {tested: [0.11.0, null]}
    "15": {tested: [0.12.0, null]}
    "16": {tested: [0.15.0, null]}
    "17": {tested: [0.17.0, null]}
    "18": {tested: [0.19.0, null]}
  refuse:
    - from_major: "17"
      below: 0.17.0
      reason: >-
        PostgreSQL 17 moved the checkpoint columns from pg_stat_bgwriter to
        pg_stat_checkpointer; postgres_exporter reads them there from 0.17.0 (#1072)
"""
