package tessera

/*
#include <tessera.h>
*/
import "C"

import (
	"encoding/hex"
	"fmt"
	"runtime"
)

// Hash is a SHA-256 digest: a Merkle root or leaf, a receipt's or
// evidence's hash, a kernel hash, a result hash or seal.
type Hash [32]byte

// String returns the hash in lowercase hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// PublicKey is an Ed25519 public key.
type PublicKey [32]byte

// String returns the key in lowercase hex.
func (k PublicKey) String() string { return hex.EncodeToString(k[:]) }

// KeyID is the 16-byte id that Hello, every COSE header and every receipt
// name a key by.
type KeyID [16]byte

// String returns the id in lowercase hex.
func (id KeyID) String() string { return hex.EncodeToString(id[:]) }

// Signature is an Ed25519 signature.
type Signature [64]byte

// String returns the signature in lowercase hex.
func (s Signature) String() string { return hex.EncodeToString(s[:]) }

// ParsePublicKey reads a public key written as 64 hex digits.
func ParsePublicKey(s string) (PublicKey, error) {
	var k PublicKey
	if err := parseHex(s, k[:]); err != nil {
		return PublicKey{}, &Error{Code: CodeInvalidArgument, Op: "ParsePublicKey", Detail: err.Error()}
	}
	return k, nil
}

// ParseHash reads a hash written as 64 hex digits.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if err := parseHex(s, h[:]); err != nil {
		return Hash{}, &Error{Code: CodeInvalidArgument, Op: "ParseHash", Detail: err.Error()}
	}
	return h, nil
}

func parseHex(s string, out []byte) error {
	if len(s) != 2*len(out) {
		return fmt.Errorf("want %d hex digits, got %d", 2*len(out), len(s))
	}
	_, err := hex.Decode(out, []byte(s))
	return err
}

// KeyID returns the id of the key: what Hello, COSE headers and receipts
// name it by.
func (k PublicKey) KeyID() KeyID {
	var id KeyID
	r := C.tessera_key_id(arrayPtr(k[:]), arrayPtr(id[:]))
	mustOK(r, "PublicKey.KeyID")
	return id
}

// GenerateKey makes a new Ed25519 device key from the system's random
// source and returns it as a PKCS#8 v2 document (KeyPKCS8Len bytes), for
// NewSignerFromPKCS8 and PublicKeyFromPKCS8. The document is the private
// key: store it where only the provider reads it.
func GenerateKey() ([]byte, error) {
	doc := make([]byte, KeyPKCS8Len)
	var n C.size_t
	r := C.tessera_key_generate(bytesPtr(doc), C.size_t(len(doc)), &n)
	if err := check(r, "GenerateKey"); err != nil {
		return nil, err
	}
	runtime.KeepAlive(doc)
	return doc[:n], nil
}

// PublicKeyFromPKCS8 returns the public key of a PKCS#8 document, or
// ErrKeyRejected when it is not an Ed25519 PKCS#8 v2 key.
func PublicKeyFromPKCS8(der []byte) (PublicKey, error) {
	var pk PublicKey
	r := C.tessera_key_public(bytesPtr(der), C.size_t(len(der)), arrayPtr(pk[:]))
	runtime.KeepAlive(der)
	if err := check(r, "PublicKeyFromPKCS8"); err != nil {
		return PublicKey{}, err
	}
	return pk, nil
}

// mustOK panics when a call that cannot fail on valid arguments failed:
// the binding passed every pointer and length itself, so a failure is a bug
// in the library or the binding, not a condition a caller could handle.
func mustOK(r C.tessera_result, op string) {
	if r != C.TESSERA_OK {
		panic(&Error{Code: Code(r), Op: op, Detail: "unexpected failure of a call that takes no caller input that can be wrong"})
	}
}
