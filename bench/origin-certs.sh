#!/usr/bin/env bash
# Sourced by bench/run.sh and bench/callgrind.sh: the benchmark origin's test CA and its
# wildcard certificate for bench.test and *.bench.test (P-256, two days), made in a folder.

# make_origin_certs DIR: writes origin-ca.pem, origin-ca-key.pem, origin.pem, origin-key.pem.
make_origin_certs() {
    (
        cd "$1"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout origin-ca-key.pem -out origin-ca.pem -days 2 \
            -subj "/CN=strictproxy bench origin CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout origin-key.pem -out origin.csr -subj "/CN=bench.test" 2>/dev/null
        printf '%s\n' "subjectAltName=DNS:bench.test,DNS:*.bench.test" \
            "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
            "extendedKeyUsage=serverAuth" >origin.ext
        openssl x509 -req -in origin.csr -CA origin-ca.pem -CAkey origin-ca-key.pem \
            -CAcreateserial -out origin.pem -days 2 -extfile origin.ext 2>/dev/null
    )
}
