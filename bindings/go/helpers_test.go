package tessera_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	tessera "github.com/tessera-compute/tessera/bindings/go"
)

// repoRoot is the repository's root, two levels above this package.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// loadVectors decodes core/tests/vectors/NAME.json into out, numbers kept
// exact (json.Number) where out holds interfaces.
func loadVectors(t testing.TB, name string, out any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "core", "tests", "vectors", name))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(out); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("hex %q: %v", s, err)
	}
	return b
}

func unhex32(t testing.TB, s string) [32]byte {
	t.Helper()
	var out [32]byte
	b := unhex(t, s)
	if len(b) != 32 {
		t.Fatalf("want 32 bytes, got %d", len(b))
	}
	copy(out[:], b)
	return out
}

// generated is the vectors' data: byte i is (i*31 + 7) mod 251.
func generated(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((i*31 + 7) % 251)
	}
	return b
}

// split cuts data into consecutive pieces of lens bytes.
func split(t testing.TB, data []byte, lens []int) [][]byte {
	t.Helper()
	out := make([][]byte, 0, len(lens))
	at := 0
	for _, n := range lens {
		out = append(out, data[at:at+n])
		at += n
	}
	if at != len(data) {
		t.Fatalf("buffer lengths add up to %d, data is %d", at, len(data))
	}
	return out
}

// verifyErrors maps the vectors' expect_error names to the binding's
// sentinel errors.
var verifyErrors = map[string]*tessera.Error{
	"Malformed":          tessera.ErrMalformed,
	"BadSignature":       tessera.ErrBadSignature,
	"UnknownKey":         tessera.ErrUnknownKey,
	"WrongNonce":         tessera.ErrWrongNonce,
	"Replayed":           tessera.ErrReplayed,
	"OutOfOrder":         tessera.ErrOutOfOrder,
	"BrokenChain":        tessera.ErrBrokenChain,
	"ChunkProofMismatch": tessera.ErrChunkProofMismatch,
}

// wantCode fails unless err is an *Error with the code of want.
func wantCode(t testing.TB, err error, want *tessera.Error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got error %v, want %s", err, want.Code)
	}
	var e *tessera.Error
	if !errors.As(err, &e) || e.Code != want.Code {
		t.Fatalf("got error %v, want an *Error with code %d", err, want.Code)
	}
}

// gcStress collects garbage and runs finalizers between calls, so a
// handle or buffer the binding forgot to keep alive is freed under it.
func gcStress() {
	runtime.GC()
	runtime.GC()
}
