# Stops and removes Prometheus and Alertmanager with everything the formula wrote.
include:
  - .service.clean
  - .config.clean
  - .package.clean
