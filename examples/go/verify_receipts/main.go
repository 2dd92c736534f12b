// Command verify_receipts is the settlement side: it verifies a provider's
// whole receipt chain from a receipts file before paying for it.
//
// The file is UTF-8 text, one receipt per line in lowercase hex, in chain
// order; blank lines and lines starting with # are ignored (../provider
// writes it). Every receipt must be signed by the provider's key and follow
// the one before it, from sequence 1: none missing, replayed, reordered or
// forked. It prints one line per receipt and a summary, and exits with
// status 1 at the first receipt that fails (2 for a usage error).
//
//	verify_receipts --public-key HEX receipts.txt
package main

import (
	"bufio"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	tessera "github.com/tessera-compute/tessera/bindings/go"
)

func main() {
	publicKey := flag.String("public-key", "", "the provider's Ed25519 public key, 64 hex digits (required)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: verify_receipts --public-key HEX RECEIPTS-FILE\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *publicKey == "" || flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	key, err := tessera.ParsePublicKey(*publicKey)
	if err != nil {
		fmt.Fprintf(os.Stderr, "verify_receipts: --public-key: %v\n", err)
		os.Exit(2)
	}
	f, err := os.Open(flag.Arg(0))
	if err != nil {
		fmt.Fprintf(os.Stderr, "verify_receipts: %v\n", err)
		os.Exit(2)
	}
	defer f.Close()
	if err := verify(f, key, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "verify_receipts: %s: %v\n", flag.Arg(0), err)
		os.Exit(1)
	}
}

// summary adds up what the verified receipts say.
type summary struct {
	receipts, completed, failed int
	charged                     uint64
	last                        tessera.ChainState
}

// verify checks every receipt read from in as the chain of key from
// sequence 1, writing one line per receipt and a summary to out.
func verify(in io.Reader, key tessera.PublicKey, out io.Writer) error {
	v, err := tessera.NewChainVerifier(key, nil)
	if err != nil {
		return err
	}
	defer v.Close()
	var s summary
	lines := bufio.NewScanner(in)
	lines.Buffer(make([]byte, 4096), 1<<20)
	for number := 1; lines.Scan(); number++ {
		line := strings.TrimSpace(lines.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		receipt, err := hex.DecodeString(line)
		if err != nil {
			return fmt.Errorf("line %d: not a receipt in hex: %v", number, err)
		}
		info, err := v.VerifyNext(receipt, nil)
		if err != nil {
			return fmt.Errorf("line %d, receipt %d of the chain: %w", number, s.receipts+1, err)
		}
		s.receipts++
		if info.Status == tessera.ReceiptCompleted {
			s.completed++
		} else {
			s.failed++
		}
		s.charged += info.Price
		fmt.Fprintf(out, "receipt %d: job %d, %s, price %d, GPU %d us, result %s: ok\n",
			info.Sequence, info.Job, info.Status, info.Price, info.Usage.GPUTimeMicros, info.ResultHash)
	}
	if err := lines.Err(); err != nil {
		return err
	}
	if s.last, err = v.Chain(); err != nil {
		return err
	}
	if s.receipts == 0 {
		fmt.Fprintln(out, "no receipts in the file")
		return nil
	}
	fmt.Fprintf(out, "%d receipts verified: the chain of key %s from sequence 1 to %d; %d completed, %d failed; %d charged\n",
		s.receipts, key.KeyID(), s.last.NextSequence-1, s.completed, s.failed, s.charged)
	return nil
}
