// Command provider is a complete Tessera provider in Go, on the library's
// runtime.
//
// It loads (or creates) the device key, opens the GPU through Vulkan, keeps
// a TLS session with the coordinator (reconnecting with backoff), runs the
// jobs it takes on the GPU, stores results until they are acknowledged, and
// drains on SIGINT or SIGTERM: jobs in flight finish, nothing new is taken,
// then it says goodbye. Every receipt it signs is appended to a receipts
// file (one hex line each, in chain order) as it is signed; at the end it
// verifies that whole file as a chain of its own key, as a settlement
// service would (see ../verify_receipts). Log lines go to standard error; a
// status line every few seconds to standard output.
//
// With --executor go the jobs pass through a Go Executor, which hands each
// to the device and logs what it ran.
//
//	provider --coordinator HOST:PORT (--ca CA.pem | --pin HEX) --key device.key \
//	         [--store DIR] [--server-name NAME] [--price-base N] \
//	         [--receipts FILE] [--executor device|go] [--status-every 5s] \
//	         [--drain-timeout 30s]
package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	tessera "github.com/tessera-compute/tessera/bindings/go"
)

func main() {
	coordinator := flag.String("coordinator", "", "the coordinator, HOST:PORT (required)")
	ca := flag.String("ca", "", "PEM file of the CA that signs the coordinator's certificate (or --pin)")
	pin := flag.String("pin", "", "SHA-256 of the coordinator's public key, 64 hex digits (or --ca)")
	keyFile := flag.String("key", "", "the device key, PKCS#8; created (mode 0600) if missing (required)")
	store := flag.String("store", "", "directory where results wait for acknowledgement (default: memory)")
	serverName := flag.String("server-name", "", "the name on the coordinator's certificate (default: its host)")
	priceBase := flag.Uint64("price-base", 100, "fixed fee per job")
	receipts := flag.String("receipts", "receipts.txt", "file the signed receipts are appended to")
	executor := flag.String("executor", "device", "who runs the jobs: device, or go (a Go Executor handing them to the device)")
	statusEvery := flag.Duration("status-every", 5*time.Second, "interval of the status line")
	drainTimeout := flag.Duration("drain-timeout", 30*time.Second, "how long a drain may wait for acknowledgements")
	flag.Parse()
	if *coordinator == "" || (*ca == "") == (*pin == "") || *keyFile == "" || flag.NArg() > 0 ||
		(*executor != "device" && *executor != "go") {
		flag.Usage()
		os.Exit(2)
	}
	log.SetFlags(0)
	log.SetPrefix("provider: ")
	cfg := tessera.DefaultConfig()
	cfg.Coordinator = *coordinator
	cfg.ServerName = *serverName
	cfg.CAFile = *ca
	if *pin != "" {
		h, err := tessera.ParseHash(*pin)
		if err != nil {
			log.Printf("--pin: %v", err)
			os.Exit(2)
		}
		cfg.PinnedKey = &h
	}
	cfg.StoreDir = *store
	cfg.Policy.MaxConcurrent = 2
	cfg.Policy.PriceBase = *priceBase
	cfg.Policy.PricePerGPUMs = 10
	cfg.Policy.PricePerMiBIn = 2
	cfg.Policy.PricePerMiBOut = 2
	cfg.Policy.Floor = 120
	cfg.DrainTimeout = *drainTimeout
	if *executor == "go" {
		cfg.Executor = &tessera.Executor{Run: runOnDevice}
	}
	if err := run(cfg, *keyFile, *receipts, *statusEvery); err != nil {
		log.Fatal(err)
	}
}

// runOnDevice is the Go Executor of --executor go: it hands each job to
// the runtime's device and says what ran.
func runOnDevice(job *tessera.Job) error {
	usage, err := job.RunOnDevice()
	if err != nil {
		log.Printf("job %d: %v", job.ID, err)
		return err // fails the job as the device would
	}
	log.Printf("job %d: %s, grid %v, %d buffers: %d us on the device", job.ID, job.EntryPoint, job.Grid, len(job.Buffers), usage.GPUTimeMicros)
	return nil
}

func run(cfg tessera.Config, keyFile, receiptsPath string, statusEvery time.Duration) error {
	if err := tessera.SetLogger(func(level tessera.LogLevel, target, message string) {
		fmt.Fprintf(os.Stderr, "%-5s %s: %s\n", level, target, message)
	}, tessera.LogInfo); err != nil {
		return err
	}
	defer tessera.SetLogger(nil, tessera.LogOff)

	signer, public, err := loadOrCreateKey(keyFile)
	if err != nil {
		return err
	}
	log.Printf("device key %s (id %s)", public, public.KeyID())
	out, err := openReceipts(receiptsPath, public)
	if err != nil {
		signer.Close()
		return err
	}
	defer out.close()

	rt, err := tessera.NewRuntime(cfg, signer)
	if err != nil {
		return fmt.Errorf("starting: %w", err)
	}
	defer rt.Close()
	// Each receipt as it is signed, before the coordinator sees it.
	if err := rt.SetReceiptCallback(out.add); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	ticker := time.NewTicker(statusEvery)
	defer ticker.Stop()
	var runErr error
loop:
	for {
		select {
		case runErr = <-done:
			break loop
		case <-ticker.C:
			if line, err := rt.StatusText(); err == nil {
				fmt.Printf("status: %s\n", line)
			}
		case <-ctx.Done():
			log.Printf("draining (%v)", context.Cause(ctx))
			runErr = <-done
			break loop
		}
	}
	line, _ := rt.StatusText()
	log.Printf("drained; %s", line)
	if err := out.err(); err != nil {
		return fmt.Errorf("writing the receipts: %w", err)
	}
	if runErr != nil {
		return runErr
	}
	// The settlement side's check, on our own receipts.
	n, err := verifyFile(receiptsPath, public)
	if err != nil {
		return fmt.Errorf("%s: %w", receiptsPath, err)
	}
	log.Printf("%s: %d receipts verified, a chain of key %s from sequence 1", receiptsPath, n, public.KeyID())
	return nil
}

// loadOrCreateKey reads the PKCS#8 key file, or makes a new key and writes
// it (mode 0600, never over an existing file).
func loadOrCreateKey(path string) (*tessera.Signer, tessera.PublicKey, error) {
	der, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if der, err = tessera.GenerateKey(); err != nil {
			return nil, tessera.PublicKey{}, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, tessera.PublicKey{}, err
		}
		_, err = f.Write(der)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, tessera.PublicKey{}, err
		}
		log.Printf("created a new device key in %s", path)
	} else if err != nil {
		return nil, tessera.PublicKey{}, err
	}
	public, err := tessera.PublicKeyFromPKCS8(der)
	if err != nil {
		return nil, tessera.PublicKey{}, fmt.Errorf("%s: %w", path, err)
	}
	signer, err := tessera.NewSignerFromPKCS8(der)
	clear(der)
	if err != nil {
		return nil, tessera.PublicKey{}, fmt.Errorf("%s: %w", path, err)
	}
	return signer, public, nil
}

// receiptsFile appends receipts, one hex line each, as they are signed.
type receiptsFile struct {
	mu      sync.Mutex
	f       *os.File
	failure error
}

// openReceipts opens the receipts file for appending; a new one starts
// with a comment naming the key.
func openReceipts(path string, public tessera.PublicKey) (*receiptsFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	if info, err := f.Stat(); err == nil && info.Size() == 0 {
		fmt.Fprintf(f, "# Tessera receipts of key %s, in chain order\n", public)
	}
	return &receiptsFile{f: f}, nil
}

// add is the runtime's receipt function: the line is on disk before the
// coordinator gets the receipt.
func (r *receiptsFile) add(job uint64, receipt []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failure != nil {
		return
	}
	if _, err := fmt.Fprintf(r.f, "%s\n", hex.EncodeToString(receipt)); err != nil {
		r.failure = err
		return
	}
	if err := r.f.Sync(); err != nil {
		r.failure = err
		return
	}
	log.Printf("job %d: receipt signed (%d bytes)", job, len(receipt))
}

func (r *receiptsFile) err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failure
}

func (r *receiptsFile) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.f.Close()
}

// verifyFile checks every receipt of the file as a chain of key from
// sequence 1, and returns how many there are.
func verifyFile(path string, key tessera.PublicKey) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	v, err := tessera.NewChainVerifier(key, nil)
	if err != nil {
		return 0, err
	}
	defer v.Close()
	n := 0
	lines := bufio.NewScanner(f)
	lines.Buffer(make([]byte, 4096), 1<<20)
	for number := 1; lines.Scan(); number++ {
		line := strings.TrimSpace(lines.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		receipt, err := hex.DecodeString(line)
		if err != nil {
			return n, fmt.Errorf("line %d: not hex: %w", number, err)
		}
		if _, err := v.VerifyNext(receipt, nil); err != nil {
			return n, fmt.Errorf("line %d: %w", number, err)
		}
		n++
	}
	return n, lines.Err()
}
