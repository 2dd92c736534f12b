package tessera_test

import (
	"testing"

	tessera "github.com/tessera-compute/tessera/bindings/go"
)

// BenchmarkReceiptVerify verifies one signed receipt (the first vector of
// core/tests/vectors/receipts.json) per iteration: ci/bench prints it as
// go.receipt_verify beside the Rust figure of the same run.
func BenchmarkReceiptVerify(b *testing.B) {
	var vectors []receiptVector
	loadVectors(b, "receipts.json", &vectors)
	v := &vectors[0]
	receipt := unhex(b, v.Hex)
	pk := tessera.PublicKey(unhex32(b, v.PublicKey))
	if _, err := tessera.VerifyReceipt(receipt, pk); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := tessera.VerifyReceipt(receipt, pk); err != nil {
			b.Fatal(err)
		}
	}
}
