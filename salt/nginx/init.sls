# nginx for opskit's web formulas: the package, nginx.conf, sites, and a service that is
# only ever reloaded after `nginx -t` accepted the configuration.
include:
  - .package
  - .config
  - .sites
  - .service
