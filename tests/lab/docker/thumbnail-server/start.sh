#!/bin/bash
# Start of the thumbnail-server stand-in image: what upstream's image does at start
# (haiwen/seafile-thumbnail-server docker/scripts/01_init.sh, thumbnail-runit.sh,
# nginx run script), in one script.
set -euo pipefail

# 01_init.sh: the time zone, the /shared layout, /opt/seafile/* linked to it.
if [ -n "${TIME_ZONE:-}" ]; then
    zone=/usr/share/zoneinfo/$TIME_ZONE
    [ -e "$zone" ] || { echo "invalid time zone"; exit 1; }
    ln -snf "$zone" /etc/localtime
    echo "$TIME_ZONE" > /etc/timezone
fi
[ -e /shared ] || { echo "do not find /shared path"; exit 1; }
mkdir -p /shared/seafile/conf /shared/seafile/seahub-data/thumbnail /shared/seafile/logs \
    /opt/seafile/pids
[ -e /shared/seafile/conf/seafile.conf ] || touch /shared/seafile/conf/seafile.conf
ln -sfn /shared/seafile/* /opt/seafile

# thumbnail-runit.sh: the service's environment and working directory (its PYTHONPATH
# also names Ubuntu's python3.12 directories, which Debian's python3 searches anyway).
export PYTHONPATH=/opt/seafile/seafile/lib/python3/site-packages/
export SEAFILE_CONF_DIR=/opt/seafile/seafile-data
export SEAFILE_CENTRAL_CONF_DIR=/opt/seafile/conf
export CONF_DIR=/opt/seafile/conf
export LOG_DIR=/opt/seafile/logs
export THUMBNAIL_ROOT=/opt/seafile/seahub-data/thumbnail
export SEAFILE_MYSQL_DB_CCNET_DB_NAME=${SEAFILE_MYSQL_DB_CCNET_DB_NAME:-ccnet_db}
export SEAFILE_MYSQL_DB_SEAFILE_DB_NAME=${SEAFILE_MYSQL_DB_SEAFILE_DB_NAME:-seafile_db}
export SEAFILE_MYSQL_DB_SEAHUB_DB_NAME=${SEAFILE_MYSQL_DB_SEAHUB_DB_NAME:-seahub_db}
export SITE_ROOT=${SITE_ROOT:-/}

/usr/sbin/nginx &
nginx=$!
(cd /opt/seafile/thumbnail-server && exec /usr/bin/python3 main.py) &
service=$!

trap 'kill -TERM "$nginx" "$service" 2>/dev/null; wait; exit 0' TERM INT
# Either one ending ends the container; its restart policy starts both again.
set +e
wait -n "$nginx" "$service"
status=$?
kill -TERM "$nginx" "$service" 2>/dev/null
wait
exit "$status"
