#!/bin/sh
# Make the opskit lab's database PKI once: a CA, server certificates for redis and
# PostgreSQL (for the minion's name, localhost and 127.0.0.1), and a client
# certificate for the exporters (CN "exporter", PostgreSQL's user name).
# Usage: make-pki.sh DIR HOSTNAME
set -eu
dir=$1
host=$2
umask 077
mkdir -p "$dir"
cd "$dir"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$1"; }
key ca.key
openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=opskit lab database CA" -out ca.crt
issue() {  # name cn extfile-lines
    key "$1.key"
    openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
    printf '%s\n' "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 \
        -days 825 -extfile "$1.ext" -out "$1.crt"
    rm -f "$1.csr" "$1.ext"
}
san="subjectAltName=DNS:$host,DNS:localhost,IP:127.0.0.1"
issue redis "$host" "$san"
issue postgres "$host" "$san"
issue client exporter "extendedKeyUsage=clientAuth"
chmod 0644 ca.crt redis.crt postgres.crt client.crt
chown redis:redis redis.key
chown postgres:postgres postgres.key
chmod 0600 redis.key postgres.key client.key ca.key
chmod 0755 "$dir"
touch .complete
