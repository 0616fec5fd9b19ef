#!/usr/bin/env bash
# A lab PKI with openssl, for TLS between the coordinator, its workers and operators:
#   ca.pem            the CA: give it to every client (--tls-ca) and, for mutual TLS, to the
#                     coordinator (--tls-client-ca)
#   coordinator.pem   the coordinator's certificate (--tls-cert), valid for the names and
#   coordinator.key   addresses given, and its key (--tls-key)
#   client.pem        a client certificate for workers and `coordinator status|cancel`
#   client.key        (--tls-cert / --tls-key), for mutual TLS
# Keys are P-256, certificates valid for a year; keys are written mode 600, the CA key too
# (keep ca.key off the machines, or delete it once the certificates are made).
#
# usage: scripts/lab-certs.sh DIR HOST_OR_IP [HOST_OR_IP...]
#   e.g. scripts/lab-certs.sh pki coordinator.lab 10.0.0.5
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 DIR HOST_OR_IP [HOST_OR_IP...]   (the names clients use to reach the coordinator)" >&2
    exit 2
fi
dir=$1
shift
command -v openssl >/dev/null || { echo "$0: needs openssl" >&2; exit 1; }
san=""
for h in "$@"; do
    if [[ $h =~ ^[0-9.]+$ || $h == *:* ]]; then san+="IP:$h,"; else san+="DNS:$h,"; fi
done
san=${san%,}
mkdir -p "$dir"
cd "$dir"
umask 077
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
key ca.key
openssl req -x509 -new -key ca.key -days 365 -subj "/CN=dlgrid lab CA" -out ca.pem \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
sign() { # name subject extensions
    key "$1.key"
    openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 \
        -out "$1.pem" -extfile <(printf '%b' "$3") 2>/dev/null
    rm -f "$1.csr"
}
sign coordinator "/CN=$1" "subjectAltName=$san\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n"
sign client "/CN=dlgrid client" "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n"
rm -f ca.srl
chmod 644 ca.pem coordinator.pem client.pem
echo "lab PKI in $dir: ca.pem, coordinator.pem/.key (for $san), client.pem/.key" >&2
