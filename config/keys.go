package config

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"

	"filippo.io/edwards25519"

	"github.com/aibo-privacy/aibo-privacyd/internal/textx"
)

// PublicKeys decodes a kid -> standard base64 ed25519 public key map and
// refuses every key that anyone could sign for, or that two verifiers
// could read differently (see checkPublicKey).
func PublicKeys(m map[string]string) (map[string]ed25519.PublicKey, error) {
	out := make(map[string]ed25519.PublicKey, len(m))
	for kid, s := range m {
		if kid == "" {
			return nil, errors.New("empty key id")
		}
		raw, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("key %q is not standard base64 of an ed25519 public key (replace the placeholder with a real key)", cutKid(kid))
		}
		if len(raw) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("key %q has %d bytes, an ed25519 public key has %d", cutKid(kid), len(raw), ed25519.PublicKeySize)
		}
		if err := checkPublicKey(raw); err != nil {
			return nil, fmt.Errorf("key %q %w", cutKid(kid), err)
		}
		out[kid] = ed25519.PublicKey(raw)
	}
	return out, nil
}

// checkPublicKey refuses a 32-byte ed25519 public key that is:
//   - all zero (a placeholder; also a point of small order);
//   - not a point on the curve;
//   - a non-canonical encoding (a y of 2^255-19 or more, or x = 0 with the
//     sign bit set), which implementations decode differently;
//   - of small order (one of the 8 points with [8]A = identity, the
//     identity among them): crypto/ed25519 verifies a signature (R, S)
//     against such a key for any message when R = [S]B, so anyone can
//     sign for it;
//   - outside the prime-order subgroup: a real key is [a]B and always in
//     it, so a key with a torsion part did not come from a key pair.
//
// crypto/ed25519 does none of these checks and exposes no point
// arithmetic; filippo.io/edwards25519 is the group implementation the
// standard library itself vendors (crypto/internal/fips140/edwards25519).
func checkPublicKey(raw []byte) error {
	if bytes.Equal(raw, make([]byte, len(raw))) {
		return errors.New("is all zero (a placeholder, not a key)")
	}
	p, err := new(edwards25519.Point).SetBytes(raw)
	if err != nil {
		return errors.New("is not a point on the ed25519 curve")
	}
	if !bytes.Equal(p.Bytes(), raw) {
		return errors.New("is not the canonical encoding of its point")
	}
	if new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 1 {
		return errors.New("is a point of small order: anyone can sign for it")
	}
	// [L]A = [L-1]A + A is the identity exactly when A is in the subgroup.
	minusOne := new(edwards25519.Scalar).Negate(scalarOne)
	lA := new(edwards25519.Point).ScalarMult(minusOne, p)
	if lA.Add(lA, p).Equal(edwards25519.NewIdentityPoint()) != 1 {
		return errors.New("is not in the prime-order subgroup: no key pair has it")
	}
	return nil
}

var scalarOne = func() *edwards25519.Scalar {
	b := make([]byte, 32)
	b[0] = 1
	s, err := new(edwards25519.Scalar).SetCanonicalBytes(b)
	if err != nil {
		panic(err)
	}
	return s
}()

func cutKid(kid string) string { return textx.Cut(kid, 40) }
