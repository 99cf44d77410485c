#!/bin/sh
# Makes the files docker-compose.yml reads as secrets, in deploy/secrets:
# the master key, passwords, a private CA and the TLS certificates it
# signs, and (with gpg) a demonstration escrow key. Run once, from the
# repository root or anywhere: deploy/make-secrets.sh [DIR]
#
# For a real deployment: use your own CA or public certificates, and let
# the security officer make the escrow key offline and hand over only its
# public half (docs/operations.md); never keep the escrow private key here.
set -eu
dir=${1:-$(dirname "$0")/secrets}
public_host=${PHIGATE_PUBLIC_HOST:-phigate.example.test}
mkdir -p "$dir"
chmod 700 "$dir"
cd "$dir"
umask 077

if [ -e master_key ]; then
	echo "make-secrets: $dir/master_key exists; refusing to overwrite" >&2
	exit 1
fi

# 32 random bytes, base64: keys.master_key_file.
openssl rand -base64 32 >master_key

pw() { openssl rand -hex 24; }
pw >store_password
# The same password as a libpq pgpass line for phigate (host:port:db:user:password).
printf 'postgres:5432:phigate:phigate:%s\n' "$(cat store_password)" >store_pgpass
pw >redis_password
pw >smarthost_password

# A private CA for the compose network, and one certificate per service.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
	-subj "/CN=phigate compose CA" -keyout ca.key -out ca.pem 2>/dev/null
cert() { # name, subjectAltName
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-subj "/CN=$1" -keyout "$1.key" -out "$1.csr" 2>/dev/null
	printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$2" >"$1.ext"
	openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
		-extfile "$1.ext" -out "$1.pem" 2>/dev/null
	rm -f "$1.csr" "$1.ext"
}
cert portal "DNS:$public_host,DNS:phigate1,DNS:phigate2,DNS:localhost,IP:127.0.0.1"
cert postgres "DNS:postgres"
cert redis "DNS:redis"
cert mail "DNS:mail"

# Demonstration escrow key (the public half goes to phigate).
if command -v gpg >/dev/null 2>&1; then
	g=$(mktemp -d)
	gpg --homedir "$g" --batch --pinentry-mode loopback --passphrase '' \
		--quick-gen-key "Example Clinic escrow <security@clinic.example.test>" ed25519 cert never 2>/dev/null
	fpr=$(gpg --homedir "$g" --batch --with-colons --list-keys 2>/dev/null | awk -F: '/^fpr/ {print $10; exit}')
	gpg --homedir "$g" --batch --pinentry-mode loopback --passphrase '' --quick-add-key "$fpr" cv25519 encr never 2>/dev/null
	gpg --homedir "$g" --batch --armor --export >escrow_public_key.asc
	gpg --homedir "$g" --batch --armor --pinentry-mode loopback --passphrase '' --export-secret-keys >escrow_private_key.DEMO-ONLY.asc
	gpgconf --homedir "$g" --kill gpg-agent 2>/dev/null || true
	rm -rf "$g"
else
	echo "make-secrets: no gpg: put the escrow public key in $dir/escrow_public_key.asc" >&2
fi

# Readable by the containers' users: phigate runs as 65532, and the keys of
# PostgreSQL (copied at start), Redis (uid 999) and Mailpit are read
# through the bind mount. The folder itself stays 0700.
# redis_password is read by both Redis and phigate, so by two users.
chmod 0644 ./*.pem ./*.key ./*.asc store_password redis_password
chmod 0600 master_key store_pgpass smarthost_password portal.key ca.key ./*DEMO-ONLY* 2>/dev/null || true
if [ "$(id -u)" = 0 ]; then
	chown 65532:65532 master_key store_pgpass smarthost_password portal.key
	chown 999:999 redis.key
else
	echo "make-secrets: now, as root: chown 65532:65532 $dir/master_key $dir/store_pgpass $dir/smarthost_password $dir/portal.key" >&2
fi
echo "make-secrets: wrote $(ls | wc -l) files to $dir"
