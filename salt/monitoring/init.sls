# Prometheus and Alertmanager from Debian's packages, scraping every target the fleet
# publishes to the Salt mine (opskit_targets), with opskit's alert rules; configuration
# checked by promtool/amtool before it goes live, then reloaded (never restarted).
include:
  - .package
  - .config
  - .service
