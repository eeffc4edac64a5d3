#!/bin/sh
# make-test-pki.sh DIR: the certificates the TLS tests use, made fresh with the `openssl`
# command (EC P-256, valid two days) into DIR, which must exist:
#   ca.pem/.key          "Orchestra Test CA"
#   other-ca.pem/.key    an unrelated CA
#   server.pem/.key      localhost + 127.0.0.1 (subjectAltName), serverAuth, signed by ca
#   wrong.pem/.key       wrong.example + *.wild.test, signed by ca
#   expired.pem/.key     localhost, signed by ca, expired in 2020
#   client.pem/.key      clientAuth, signed by ca
#   self.pem/.key        localhost, self-signed
# Used by the Swift TLS tests, the interop tests and the binding tests alike.
set -e
[ -d "$1" ] || { echo "usage: make-test-pki.sh DIR (an existing directory)" >&2; exit 2; }
cd "$1"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key"; }
ca() {
  key "$1"
  openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 2 -subj "/CN=$2" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}
ca ca "Orchestra Test CA"
ca other-ca "Some Other CA"
mkdir db && touch db/index.txt && echo 01 > db/serial
cat > ca.cnf <<'EOF'
[ ca ]
default_ca = test_ca
[ test_ca ]
database = db/index.txt
new_certs_dir = db
serial = db/serial
default_md = sha256
policy = any
unique_subject = no
[ any ]
commonName = supplied
[ server ]
subjectAltName = DNS:localhost,IP:127.0.0.1
extendedKeyUsage = serverAuth
[ wrong ]
subjectAltName = DNS:wrong.example,DNS:*.wild.test
extendedKeyUsage = serverAuth
[ client ]
extendedKeyUsage = clientAuth
EOF
# leaf NAME CN EXTENSIONS DATES...
leaf() {
  name=$1; cn=$2; ext=$3; shift 3
  key "$name"
  openssl req -new -key "$name.key" -out "$name.csr" -subj "/CN=$cn"
  openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in "$name.csr" \
    -out "$name.pem" -extensions "$ext" -notext "$@"
}
leaf server localhost server -days 2
leaf wrong wrong.example wrong -days 2
leaf expired localhost server -startdate 20200101000000Z -enddate 20200201000000Z
leaf client test-client client -days 2
key self
openssl req -x509 -new -key self.key -out self.pem -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1
