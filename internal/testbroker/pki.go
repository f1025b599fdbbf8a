package testbroker

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

type pkiFiles struct {
	caFile                string
	serverCert, serverKey string
	clientCert, clientKey string
}

type keyPair struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// generatePKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate (all ECDSA P-256, valid for one day) into dir.
func generatePKI(t testing.TB, dir string) pkiFiles {
	t.Helper()
	ca := newCert(t, nil, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "testbroker CA"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	})
	server := newCert(t, ca, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:    []string{"localhost"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	client := newCert(t, ca, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "testbroker client"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	f := pkiFiles{
		caFile:     filepath.Join(dir, "ca.pem"),
		serverCert: filepath.Join(dir, "server.pem"),
		serverKey:  filepath.Join(dir, "server.key"),
		clientCert: filepath.Join(dir, "client.pem"),
		clientKey:  filepath.Join(dir, "client.key"),
	}
	writeCert(t, f.caFile, ca)
	writeCert(t, f.serverCert, server)
	writeKey(t, f.serverKey, server)
	writeCert(t, f.clientCert, client)
	writeKey(t, f.clientKey, client)
	return f
}

func newCert(t testing.TB, parent *keyPair, tmpl *x509.Certificate) *keyPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testbroker: generate key: %v", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatalf("testbroker: serial: %v", err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	signerCert, signerKey := tmpl, key
	if parent != nil {
		signerCert, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatalf("testbroker: create certificate %q: %v", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testbroker: parse certificate: %v", err)
	}
	return &keyPair{cert: cert, key: key}
}

func writeCert(t testing.TB, path string, kp *keyPair) {
	t.Helper()
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: kp.cert.Raw})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatalf("testbroker: write %s: %v", path, err)
	}
}

func writeKey(t testing.TB, path string, kp *keyPair) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(kp.key)
	if err != nil {
		t.Fatalf("testbroker: marshal key: %v", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatalf("testbroker: write %s: %v", path, err)
	}
}
